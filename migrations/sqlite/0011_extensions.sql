-- An extension is asked for like a request, with its own card and
-- approvals; it points at the request whose access it extends and ends in
-- state 'extended' once that request's expiry moved.
ALTER TABLE access_requests ADD COLUMN extends_id BIGINT REFERENCES access_requests (id);
CREATE INDEX access_requests_by_extended ON access_requests (extends_id);
