/* The agent's state file (node.datadir/state.json): the last configuration
 * it applied, kept so that it can run with no controller at all (cached
 * mode, docs/operations.md). JSON with a format version; the key, the
 * certificate and the CA stay in their own files beside it, and no secret
 * is ever written here.
 *
 * Encoding and decoding are pure (no I/O) so the unit test and the fuzz
 * target drive them directly; agent_state_load and agent_state_save wrap
 * them with a bounded read and an atomic write. */
#ifndef CASCADE_AGENT_STATE_H
#define CASCADE_AGENT_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "agentmsg.h"

#define AGENT_STATE_FILE "state.json"
#define AGENT_STATE_FORMAT "cascade-agent-state"
#define AGENT_STATE_VERSION 1
#define AGENT_STATE_MAX_BYTES (4u << 20)   /* a larger file is refused unread */
#define AGENT_STATE_MAX_CHILDREN 10000     /* cascadeserver.maxchildren's bound */
#define AGENT_STATE_MAX_RULES 1024         /* per list, as the config file */
#define AGENT_STATE_MAX_STR 4096           /* any one string */

typedef struct agent_state {
  int64_t node_id;                    /* > 0 */
  char *node_name;                    /* owned */
  int64_t node_epoch;                 /* credential epoch, 0 unknown */
  char *ca_sha256;                    /* owned: fingerprint of node-ca.crt (x509_fingerprint) */
  int64_t saved_at;                   /* unix seconds, informative */
  agentmsg_config_t *config;          /* owned: generation, topology, rules */
} agent_state_t;

/* agent_state_encode renders |st| (its config must be set) as JSON text
 * (malloc'd), or NULL when out of memory. */
char *agent_state_encode(const agent_state_t *st);

/* agent_state_decode parses |len| bytes of |buf| into |out|: format and
 * version, every field's type and bound, ids positive, generation non-zero.
 * Returns 0, or -1 with |err| saying what is wrong and |out| zeroed. */
int agent_state_decode(const char *buf, size_t len, agent_state_t *out, char *err, size_t errlen);

/* agent_state_check tells whether |st| belongs to this node: its name is
 * |name| and its CA fingerprint matches the certificate |ca_pem| (NULL: no
 * CA known, which fails). Returns 0 or -1 with |err| set. */
int agent_state_check(const agent_state_t *st, const char *name, const char *ca_pem, char *err,
                      size_t errlen);

/* agent_state_free frees |st|'s values and zeroes it; accepts NULL. */
void agent_state_free(agent_state_t *st);

/* agent_state_load reads |dir|/state.json into |out|. Returns 0, 1 when
 * there is no file, or -1 with |err| set (unreadable, too large, or
 * agent_state_decode's refusal). */
int agent_state_load(const char *dir, agent_state_t *out, char *err, size_t errlen);

/* agent_state_save writes |st| to |dir|/state.json atomically (temporary
 * file, fsync, rename, fsync of the directory), mode 0600. 0 or -1 with
 * errno set. */
int agent_state_save(const char *dir, const agent_state_t *st);

#endif
