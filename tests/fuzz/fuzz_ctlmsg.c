/* Fuzz target for the control channel codec: any bytes either decode into
 * a message that passes the bounds of docs/protocol.md or are refused with
 * a reason, as a Request and as a Response, without a memory error; what
 * decodes packs again within the cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctlmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char why[128];
  size_t len;

  why[0] = '\0';
  Cascade__Control__Request *q = ctlmsg_decode_request(data, size, why, sizeof(why));
  if (q == NULL && why[0] == '\0') abort(); /* a refusal always says why */
  if (q) {
    uint8_t *buf = ctlmsg_pack_request(q, &len);
    if (buf == NULL) abort();
    free(buf);
    ctlmsg_free_request(q);
  }
  why[0] = '\0';
  Cascade__Control__Response *r = ctlmsg_decode_response(data, size, why, sizeof(why));
  if (r == NULL && why[0] == '\0') abort();
  if (r) {
    if (r->status == NULL) abort();
    uint8_t *buf = ctlmsg_pack_response(r, &len);
    if (buf == NULL) abort();
    free(buf);
    ctlmsg_free_response(r);
  }
  return 0;
}
