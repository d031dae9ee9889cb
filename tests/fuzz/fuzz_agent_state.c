/* Fuzz target for the agent's state file parser (agent/state.c): any input
 * is decoded or refused without a memory error; what decodes encodes again
 * and decodes to the same node, generation and topology. */
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
    const Cascade__Control__Topology *a = st.config->topology, *b = again.config->topology;
    if (again.node_id != st.node_id || strcmp(again.node_name, st.node_name) != 0 ||
        again.config->generation != st.config->generation || a == NULL || b == NULL ||
        a->n_children != b->n_children || a->parent_id != b->parent_id)
      abort();
    agent_state_free(&again);
    free(text);
  }
  agent_state_free(&st);
  return 0;
}
