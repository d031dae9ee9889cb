-- 002_control: what the control channel needs: desired/applied configuration
-- generations, the addresses and version a node advertises, the rules the
-- controller sets for it, and its certificate's expiry.
ALTER TABLE instances
  -- Raised by every change that concerns the node (parent, rules, children,
  -- its parent's address); the agent acknowledges the one it runs.
  ADD COLUMN config_generation  bigint NOT NULL DEFAULT 1,
  ADD COLUMN applied_generation bigint NOT NULL DEFAULT 0,
  -- Raised when the secret changes: sessions made before are revoked.
  ADD COLUMN secret_epoch       bigint NOT NULL DEFAULT 1,
  ADD COLUMN quic_addr          text NOT NULL DEFAULT '',
  ADD COLUMN http_addr          text NOT NULL DEFAULT '',
  ADD COLUMN rtmp_addr          text NOT NULL DEFAULT '',
  ADD COLUMN version            text NOT NULL DEFAULT '',
  -- The parent address the agent's own file names (seed: cascadeclient.server).
  ADD COLUMN static_parent      text NOT NULL DEFAULT '',
  -- Rules; NULL = the agent's own configuration file decides.
  ADD COLUMN relay_allow        text[],
  ADD COLUMN relay_deny         text[],
  ADD COLUMN onsub_pull         jsonb CHECK (onsub_pull IS NULL OR jsonb_typeof(onsub_pull) = 'array'),
  ADD COLUMN autopush           boolean,
  ADD COLUMN cert_not_after     timestamptz;

CREATE INDEX instances_quic_idx ON instances (quic_addr) WHERE quic_addr <> '';
CREATE INDEX instances_static_parent_idx ON instances (static_parent)
  WHERE static_parent <> '' AND parent_id IS NULL;
