-- 005_feed: the live feed of changes (GET /api/feed, docs/api.md "Live
-- feed"; docs/architecture.md "The live feed").
--
-- Triggers write one row per change that a console shows: a node created,
-- deleted, gone online or offline; its desired or applied generation moved;
-- a link of its last heartbeat report gone up or down; a stream in it
-- started or stopped. Whatever replica made the change (or holds the
-- session whose report moved), every replica reads the rows, in id order,
-- woken by NOTIFY cascade_feed. Rows older than feed.retention are deleted
-- by the replicas.
CREATE TABLE feed_events (
  id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  time  timestamptz NOT NULL DEFAULT now(),
  kind  text NOT NULL CHECK (kind IN ('node', 'generation', 'link', 'stream')),
  data  jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object')
);
CREATE INDEX feed_events_time_idx ON feed_events (time);

CREATE FUNCTION cascade_feed_add(k text, d jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO feed_events (kind, data) VALUES (k, d);
  -- One notification per transaction: PostgreSQL folds equal ones.
  PERFORM pg_notify('cascade_feed', '');
END
$$;

CREATE FUNCTION cascade_feed_instances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM cascade_feed_add('node', jsonb_build_object('id', NEW.id, 'name', NEW.name,
                                                        'online', NEW.online));
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM cascade_feed_add('node', jsonb_build_object('id', OLD.id, 'deleted', true));
  ELSE
    IF NEW.online IS DISTINCT FROM OLD.online OR NEW.name IS DISTINCT FROM OLD.name THEN
      PERFORM cascade_feed_add('node', jsonb_build_object('id', NEW.id, 'name', NEW.name,
                                                          'online', NEW.online));
    END IF;
    IF NEW.config_generation <> OLD.config_generation
       OR NEW.applied_generation <> OLD.applied_generation THEN
      PERFORM cascade_feed_add('generation', jsonb_build_object(
        'id', NEW.id, 'desired', NEW.config_generation, 'applied', NEW.applied_generation));
    END IF;
  END IF;
  RETURN NULL;
END
$$;

-- Heartbeats update every node's row each second: the trigger runs only
-- for rows whose watched columns moved.
CREATE TRIGGER instances_feed AFTER INSERT OR DELETE ON instances
  FOR EACH ROW EXECUTE FUNCTION cascade_feed_instances();
CREATE TRIGGER instances_feed_update AFTER UPDATE ON instances
  FOR EACH ROW WHEN (NEW.online IS DISTINCT FROM OLD.online OR NEW.name IS DISTINCT FROM OLD.name
                     OR NEW.config_generation <> OLD.config_generation
                     OR NEW.applied_generation <> OLD.applied_generation)
  EXECUTE FUNCTION cascade_feed_instances();

-- A session's report (sql/004_replicas.sql): links [peer, role, up, rtt_us,
-- up_since] with role 1 parent, 2 child; streams [path, origin, origin_node,
-- since, counts] with origin 1 local, 2 pushed, 3 pulled. A report that is
-- gone (the session ended, or began again) counts as no links and no
-- streams.
CREATE FUNCTION cascade_feed_sessions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  node bigint;
  o jsonb := '{}';
  n jsonb := '{}';
  rec record;
BEGIN
  IF TG_OP = 'DELETE' THEN
    node := OLD.node_id;
  ELSE
    node := NEW.node_id;
  END IF;
  IF TG_OP <> 'INSERT' AND jsonb_typeof(OLD.report) = 'object' THEN
    o := OLD.report;
  END IF;
  IF TG_OP <> 'DELETE' AND jsonb_typeof(NEW.report) = 'object' THEN
    n := NEW.report;
  END IF;
  IF o = n THEN
    RETURN NULL;
  END IF;
  -- Links, by (peer, role): up state changed, appeared up, or vanished up.
  FOR rec IN
    WITH ol AS (SELECT l->0 AS peer, l->1 AS role, (l->>2)::boolean AS up, l->3 AS rtt
                  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(o->'links') = 'array'
                                            THEN o->'links' ELSE '[]' END) l),
         nl AS (SELECT l->0 AS peer, l->1 AS role, (l->>2)::boolean AS up, l->3 AS rtt
                  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(n->'links') = 'array'
                                            THEN n->'links' ELSE '[]' END) l)
    SELECT coalesce(nl.peer, ol.peer) AS peer, coalesce(nl.role, ol.role) AS role,
           coalesce(nl.up, false) AS up, coalesce(nl.rtt, ol.rtt) AS rtt
      FROM nl FULL JOIN ol ON ol.peer = nl.peer AND ol.role = nl.role
     WHERE coalesce(nl.up, false) IS DISTINCT FROM coalesce(ol.up, false)
  LOOP
    PERFORM cascade_feed_add('link', jsonb_build_object(
      'node', node, 'peer', rec.peer,
      'role', CASE rec.role WHEN '1' THEN 'parent' WHEN '2' THEN 'child' ELSE 'unknown' END,
      'up', rec.up,
      'rtt_ms', CASE WHEN jsonb_typeof(rec.rtt) = 'number'
                     THEN round((rec.rtt)::text::numeric / 1000, 1) ELSE 0 END));
  END LOOP;
  -- Streams, by path: started (or its origin changed), stopped.
  FOR rec IN
    WITH os AS (SELECT s->>0 AS path, s->1 AS origin
                  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(o->'streams') = 'array'
                                            THEN o->'streams' ELSE '[]' END) s),
         ns AS (SELECT s->>0 AS path, s->1 AS origin
                  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(n->'streams') = 'array'
                                            THEN n->'streams' ELSE '[]' END) s)
    SELECT coalesce(ns.path, os.path) AS path, coalesce(ns.origin, os.origin) AS origin,
           CASE WHEN ns.path IS NULL THEN 'stop' ELSE 'start' END AS state
      FROM ns FULL JOIN os ON os.path = ns.path
     WHERE ns.path IS NULL OR os.path IS NULL OR ns.origin <> os.origin
  LOOP
    PERFORM cascade_feed_add('stream', jsonb_build_object(
      'node', node, 'path', rec.path, 'state', rec.state,
      'origin', CASE rec.origin WHEN '1' THEN 'local' WHEN '2' THEN 'pushed'
                                WHEN '3' THEN 'pulled' ELSE 'unknown' END));
  END LOOP;
  RETURN NULL;
END
$$;

-- Lease renewals update every session row: only a changed report counts.
CREATE TRIGGER sessions_feed AFTER INSERT OR DELETE ON sessions
  FOR EACH ROW EXECUTE FUNCTION cascade_feed_sessions();
CREATE TRIGGER sessions_feed_update AFTER UPDATE ON sessions
  FOR EACH ROW WHEN (NEW.report IS DISTINCT FROM OLD.report)
  EXECUTE FUNCTION cascade_feed_sessions();
