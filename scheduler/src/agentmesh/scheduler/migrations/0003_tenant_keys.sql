-- Each tenant's own space of request ids (docs/security.md, "Tenants"): the request_id
-- column holds a request's key, its id qualified by its tenant ('acme/ticket-124'), so
-- that two tenants' requests of the same id are two rows. Rows of no tenant keep their
-- key (the id); a tenant's rows, keyed by the bare id before, are keyed again here. A
-- key already qualified holds a '/', which no request id holds.
UPDATE subtasks s SET request_id = r.tenant || '/' || r.request_id
    FROM requests r
    WHERE s.request_id = r.request_id AND r.tenant <> '' AND strpos(r.request_id, '/') = 0;
UPDATE requests SET request_id = tenant || '/' || request_id
    WHERE tenant <> '' AND strpos(request_id, '/') = 0;
