-- A keyed audit chain: each row says how its hash was made (`sha256` for
-- rows written before an audit key was configured, `hmac-sha256` after), and
-- the head carries an HMAC of (seq, hash) so that moving it without the key
-- is detected. The key itself is never stored here.
ALTER TABLE audit_events ADD COLUMN scheme TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE audit_head ADD COLUMN mac TEXT;

-- At most one audit checkpoint job queued or running, across replicas.
CREATE UNIQUE INDEX jobs_one_audit_checkpoint ON jobs (kind)
WHERE kind = 'audit_checkpoint' AND state IN ('queued', 'running');

-- The head only moves forward and is never deleted in the ordinary course.
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OF seq ON audit_head
WHEN NEW.seq < OLD.seq
BEGIN SELECT RAISE(ABORT, 'audit_head only moves forward'); END;
CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
BEGIN SELECT RAISE(ABORT, 'audit_head cannot be deleted'); END;
