-- 001_init: the node registry, API tokens and the audit trail.
-- Applied by cascade-controller at start inside one transaction.

-- Nodes of the cascade. A node's secret is never stored: only its
-- SCRAM-SHA-256 verifier (PostgreSQL's text form), from which the secret
-- cannot be recovered but a challenge-response can be checked.
CREATE TABLE instances (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name         text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 64),
  verifier     text NOT NULL CHECK (verifier LIKE 'SCRAM-SHA-256$%'),
  ip           text NOT NULL DEFAULT '',
  online       boolean NOT NULL DEFAULT false,
  -- Topology: the node's parent; a deleted parent leaves its children unassigned.
  parent_id    bigint REFERENCES instances (id) ON DELETE SET NULL,
  labels       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(labels) = 'object'),
  created_time timestamptz NOT NULL DEFAULT now(),
  updated_time timestamptz NOT NULL DEFAULT now(),
  last_seen    timestamptz,
  CONSTRAINT instances_name_key UNIQUE (name),
  CONSTRAINT instances_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX instances_parent_idx ON instances (parent_id);
CREATE INDEX instances_online_idx ON instances (online) WHERE online;

-- Management API bearer tokens, stored as SHA-256 of the (random, 256-bit)
-- token value: the value is shown once, at creation.
CREATE TABLE api_tokens (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name         text NOT NULL CHECK (octet_length(name) BETWEEN 1 AND 64),
  role         text NOT NULL CHECK (role IN ('admin', 'viewer')),
  token_hash   bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
  created_time timestamptz NOT NULL DEFAULT now(),
  last_used    timestamptz
);

-- Audit trail: who did what, from where. No foreign key: events outlive
-- the nodes they mention.
CREATE TABLE events (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  time        timestamptz NOT NULL DEFAULT now(),
  actor       text NOT NULL,
  action      text NOT NULL,
  instance_id bigint,
  source      text NOT NULL DEFAULT '',
  detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_time_idx ON events (time);
CREATE INDEX events_instance_idx ON events (instance_id);
