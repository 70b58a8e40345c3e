-- Replicas wake each other: a committed job insert, or a job made due at a
-- new time, notifies every listening jitbot at once (PostgreSQL folds the
-- notifications of one transaction into one), instead of at each replica's
-- next periodic look at the queue. SQLite has one process and needs none.
CREATE FUNCTION jitbot_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('jitbot_jobs', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF due_at ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jitbot_jobs_notify();
