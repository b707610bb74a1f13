-- Several schedulers over one database (docs/postgresql.md, "Several schedulers"): each
-- running request is owned by one replica under a lease on the database server's clock,
-- and every write of a running request is fenced by its owner and epoch.
ALTER TABLE requests ADD COLUMN owner text NOT NULL DEFAULT '';
ALTER TABLE requests ADD COLUMN epoch bigint NOT NULL DEFAULT 0;
-- NULL (rows from before replicas): expired, taken over by the first replica that looks.
ALTER TABLE requests ADD COLUMN lease_until timestamptz;

-- Each replica's backlog, written every few seconds, so that any replica reports the
-- whole mesh's to the autoscaler (the fresh rows summed).
CREATE TABLE replicas (
    replica text PRIMARY KEY,
    -- The backlog as JSON text: {capability: [queued, oldest wait in seconds]}.
    backlog text NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now()
);
