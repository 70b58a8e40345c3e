-- A keyed audit chain: each row says how its hash was made (`sha256` for
-- rows written before an audit key was configured, `hmac-sha256` after), and
-- the head carries an HMAC of (seq, hash) so that moving it without the key
-- is detected. The key itself is never stored here.
ALTER TABLE audit_events ADD COLUMN scheme TEXT NOT NULL DEFAULT 'sha256';
ALTER TABLE audit_head ADD COLUMN mac TEXT;

-- TRUNCATE skips row triggers: refuse it too. (UPDATE and DELETE are
-- refused since 0001; the app only ever inserts audit rows.) Whoever owns
-- the table can drop these triggers: that is what the keyed chain and the
-- checkpoints posted outside the database are for.
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- At most one audit checkpoint job queued or running, across replicas.
CREATE UNIQUE INDEX jobs_one_audit_checkpoint ON jobs (kind)
WHERE kind = 'audit_checkpoint' AND state IN ('queued', 'running');

-- The head only moves forward and is never deleted in the ordinary course
-- (the app updates it on every append, so UPDATE itself stays allowed).
CREATE FUNCTION audit_head_forward_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'UPDATE' THEN
        RAISE EXCEPTION 'audit_head only moves forward';
    ELSIF NEW.seq < OLD.seq THEN
        RAISE EXCEPTION 'audit_head only moves forward';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_head_forward_only BEFORE UPDATE OR DELETE ON audit_head
FOR EACH ROW EXECUTE FUNCTION audit_head_forward_only();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
FOR EACH STATEMENT EXECUTE FUNCTION audit_head_forward_only();
