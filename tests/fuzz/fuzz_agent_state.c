/* Fuzz target for the agent's state file parser (agent/state.c): any input
 * is decoded or refused without a memory error; what decodes encodes again,
 * decodes to the same node, generation and topology, and encodes then to
 * the same bytes (nothing is lost or changed on the way through the
 * agent's configuration struct). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  agent_state_t st, again;
  char err[320];
  if (agent_state_decode((const char *)data, size, &st, err, sizeof(err)) != 0) return 0;
  if (st.node_id <= 0 || st.config == NULL || st.config->generation == 0) abort();
  char *text = agent_state_encode(&st);
  if (text) {
    if (agent_state_decode(text, strlen(text), &again, err, sizeof(err)) != 0) abort();
    const agentmsg_config_t *a = st.config, *b = again.config;
    if (again.node_id != st.node_id || strcmp(again.node_name, st.node_name) != 0 ||
        b->generation != a->generation || a->nchildren != b->nchildren ||
        a->parent_id != b->parent_id || a->rules.has_relayapi != b->rules.has_relayapi ||
        a->rules.has_pull != b->rules.has_pull || a->rules.has_autopush != b->rules.has_autopush)
      abort();
    char *text2 = agent_state_encode(&again);
    if (text2 == NULL || strcmp(text, text2) != 0) abort();
    free(text2);
    agent_state_free(&again);
    free(text);
  }
  agent_state_free(&st);
  return 0;
}
