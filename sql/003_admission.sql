-- 003_admission: who may take a place in the tree (docs/security.md).
--
-- A node that created its own row without the deployment's join token is
-- pending: it can prove its secret but gets no session, no certificate, no
-- place in any topology until an operator approves it (PUT pending:false).
ALTER TABLE instances ADD COLUMN pending boolean NOT NULL DEFAULT false;
CREATE INDEX instances_pending_idx ON instances (id) WHERE pending;

-- Names an operator deleted: registration does not bring them back; an
-- operator creating the name again (POST /api/cascade/clients) lifts it.
CREATE TABLE deleted_names (
  name         text PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 64),
  deleted_time timestamptz NOT NULL DEFAULT now()
);

-- Static parents are resolved by the node id a child finds at its
-- cascadeclient.server address, no longer by matching advertised strings.
DROP INDEX IF EXISTS instances_static_parent_idx;
