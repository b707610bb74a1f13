-- Requests and their subtasks, as SQLite keeps them (see storerows.py): one row per
-- request, one row per subtask that has started (a step without a row is PENDING).
-- Structured values are JSON text; times are wall-clock seconds (time.time()).
CREATE TABLE requests (
    request_id text PRIMARY KEY,
    plan text NOT NULL,
    input text NOT NULL,
    priority integer NOT NULL,
    budget double precision NOT NULL,
    deadline double precision NOT NULL,
    state text NOT NULL,
    answer text,
    error text,
    created_at double precision NOT NULL,
    finished_at double precision,
    fingerprint text NOT NULL DEFAULT '',
    -- The caller's tenant ('' for none).
    tenant text NOT NULL DEFAULT ''
);

-- What a starting scheduler resumes: the running requests, a small part of the table.
CREATE INDEX requests_running ON requests (request_id) WHERE state = 'RUNNING';

CREATE TABLE subtasks (
    request_id text NOT NULL,
    subtask_id text NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (request_id, subtask_id)
);
