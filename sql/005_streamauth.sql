-- 005_streamauth: who may publish and play at the edges (docs/media.md,
-- "Authorization"; docs/api.md, "Stream authorization").
--
-- One deployment-wide row: the ordered policy [{pattern, publish, play}]
-- (modes none | token | hook; the first pattern matching the whole path
-- decides) and the HTTP hooks. The initial policy needs a signed token to
-- publish and to play any path.
CREATE TABLE streamauth (
  id           int PRIMARY KEY CHECK (id = 1),
  policy       jsonb NOT NULL,
  hooks        jsonb NOT NULL,
  updated_time timestamptz NOT NULL DEFAULT now()
);
INSERT INTO streamauth (id, policy, hooks) VALUES (1,
  '[{"pattern": ".*", "publish": "token", "play": "token"}]',
  '{"on_publish": "", "on_play": "", "on_stop": "", "on_unpublish": "",
    "timeout_ms": 2000, "cache_ms": 0, "fail_open": false}');

-- Stream-signing keys: at most two valid at once (the newest signs). The
-- value is sealed (AES-256-GCM under a key derived from the deployment CA's
-- private key, which every replica has and the database does not):
-- nonce (12) || ciphertext (32) || tag (16).
CREATE TABLE stream_keys (
  id           bigserial PRIMARY KEY,
  sealed       bytea NOT NULL CHECK (octet_length(sealed) = 60),
  created_time timestamptz NOT NULL DEFAULT now()
);

-- A node's own rules, before the deployment's; NULL: none.
ALTER TABLE instances ADD COLUMN streamauth jsonb;
