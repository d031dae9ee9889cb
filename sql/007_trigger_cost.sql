-- 007_trigger_cost: the triggers that run on every agent's join and
-- heartbeat do no work unless something they report changed.
--
-- cascade_wake (004) was a statement trigger with transition tables: every
-- UPDATE of instances -- each heartbeat batch, each node connecting --
-- copied its rows and ran PL/pgSQL to find none that mattered. It is a row
-- trigger now, whose WHEN (evaluated without PL/pgSQL) passes only a change
-- of generation, credential epoch or approval; each such row notifies its
-- own id, and PostgreSQL folds equal payloads of one transaction.
CREATE FUNCTION cascade_wake_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('cascade_wake', NEW.id::text);
  RETURN NULL;
END
$$;

DROP TRIGGER instances_wake_update ON instances;
DROP FUNCTION cascade_wake_update();
CREATE TRIGGER instances_wake_update AFTER UPDATE ON instances
  FOR EACH ROW WHEN (NEW.config_generation <> OLD.config_generation
                     OR NEW.secret_epoch <> OLD.secret_epoch
                     OR NEW.pending <> OLD.pending)
  EXECUTE FUNCTION cascade_wake_row();

-- The feed's session triggers (005) ran their JSON diff for every session
-- that began (report NULL) and every first report, without links or
-- streams as they mostly are. Their WHEN now lets through only a report
-- whose links or streams differ as JSON (a prefilter: the function still
-- decides what changed; links without streams, or either missing, compare
-- as empty).
DROP TRIGGER sessions_feed ON sessions;
DROP TRIGGER sessions_feed_update ON sessions;
CREATE TRIGGER sessions_feed_insert AFTER INSERT ON sessions
  FOR EACH ROW WHEN (coalesce(NEW.report -> 'links', '[]') <> '[]'
                     OR coalesce(NEW.report -> 'streams', '[]') <> '[]')
  EXECUTE FUNCTION cascade_feed_sessions();
CREATE TRIGGER sessions_feed_delete AFTER DELETE ON sessions
  FOR EACH ROW WHEN (coalesce(OLD.report -> 'links', '[]') <> '[]'
                     OR coalesce(OLD.report -> 'streams', '[]') <> '[]')
  EXECUTE FUNCTION cascade_feed_sessions();
CREATE TRIGGER sessions_feed_update AFTER UPDATE ON sessions
  FOR EACH ROW WHEN (coalesce(NEW.report -> 'links', '[]')
                       IS DISTINCT FROM coalesce(OLD.report -> 'links', '[]')
                     OR coalesce(NEW.report -> 'streams', '[]')
                       IS DISTINCT FROM coalesce(OLD.report -> 'streams', '[]'))
  EXECUTE FUNCTION cascade_feed_sessions();
