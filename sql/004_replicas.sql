-- 004_replicas: several controllers (replicas) on one registry
-- (docs/architecture.md, "Replicas").
--
-- A replica is one controller process: a random id per start, the address
-- other replicas reach it on, and a lease it renews every third of
-- control.sessionlease. A row outlives its process: a replica whose lease
-- ran out is gone.
CREATE TABLE replicas (
  id           text PRIMARY KEY CHECK (octet_length(id) BETWEEN 1 AND 64),
  address      text NOT NULL DEFAULT '',
  started_time timestamptz NOT NULL DEFAULT now(),
  lease_until  timestamptz NOT NULL
);

-- A node's control session: which replica holds it, in which credential
-- epoch, until when. The replica the agent authenticates with takes the
-- row; its holder renews the lease with its own; a node whose lease ran out
-- with nobody holding it is offline (any replica's sweep).
CREATE TABLE sessions (
  node_id      bigint PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
  replica_id   text NOT NULL,
  epoch        bigint NOT NULL,
  since        timestamptz NOT NULL DEFAULT now(),
  lease_until  timestamptz NOT NULL,
  -- What the node's last heartbeat reported, as its replica last wrote it
  -- (at most a second behind): {"links": [[peer, role, up, rtt_us,
  -- up_since], ...], "streams": [[path, origin, origin_node, since,
  -- [[protocol, count], ...]], ...], "total": streams the node has}. Any
  -- replica answers the topology's links and the stream directory from it.
  report       jsonb
);
CREATE INDEX sessions_replica_idx ON sessions (replica_id);
CREATE INDEX sessions_lease_idx ON sessions (lease_until);

-- The deployment: one row, written by the first replica that starts. Every
-- replica must sign with the CA whose SHA-256 fingerprint is recorded here.
CREATE TABLE deployment (
  id             int PRIMARY KEY CHECK (id = 1),
  ca_fingerprint text NOT NULL,
  created_time   timestamptz NOT NULL DEFAULT now()
);

-- Wake-ups between replicas: a committed change of what a node must run
-- (its generation), of its credential (epoch), its approval, or its
-- deletion notifies channel cascade_wake with the node ids ("1,2,3"), or
-- "all" when they would not fit. NOTIFY is sent at commit, so a replica
-- that hears it reads the new state.
CREATE FUNCTION cascade_wake_update() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids text;
BEGIN
  SELECT string_agg(n.id::text, ',') INTO ids
    FROM wake_new n JOIN wake_old o ON o.id = n.id
   WHERE n.config_generation <> o.config_generation
      OR n.secret_epoch <> o.secret_epoch
      OR n.pending <> o.pending;
  IF ids IS NOT NULL THEN
    PERFORM pg_notify('cascade_wake', CASE WHEN octet_length(ids) > 7000 THEN 'all' ELSE ids END);
  END IF;
  RETURN NULL;
END
$$;

CREATE FUNCTION cascade_wake_delete() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids text;
BEGIN
  SELECT string_agg(o.id::text, ',') INTO ids FROM wake_old o;
  IF ids IS NOT NULL THEN
    PERFORM pg_notify('cascade_wake', CASE WHEN octet_length(ids) > 7000 THEN 'all' ELSE ids END);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER instances_wake_update AFTER UPDATE ON instances
  REFERENCING OLD TABLE AS wake_old NEW TABLE AS wake_new
  FOR EACH STATEMENT EXECUTE FUNCTION cascade_wake_update();
CREATE TRIGGER instances_wake_delete AFTER DELETE ON instances
  REFERENCING OLD TABLE AS wake_old
  FOR EACH STATEMENT EXECUTE FUNCTION cascade_wake_delete();
