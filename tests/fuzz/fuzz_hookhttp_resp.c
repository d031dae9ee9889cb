/* Fuzz target for the hook client's response reader (agent/hookhttp.c):
 * any input, fed whole or in two pieces, gives the same verdict and status
 * without a memory error; a whole answer has a final status (200..599) and
 * never more than HOOKHTTP_RESP_MAX bytes were taken. */
#include <stdint.h>
#include <stdlib.h>

#include "hookhttp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run(hookhttp_resp_t *p, const uint8_t *d, size_t n, size_t cut, int *status) {
  const char *why = NULL;
  hookhttp_resp_init(p);
  int r = hookhttp_resp_feed(p, d, cut, &why);
  if (r == HOOKHTTP_MORE) r = hookhttp_resp_feed(p, d + cut, n - cut, &why);
  if (r == HOOKHTTP_MORE) r = hookhttp_resp_eof(p, &why);
  if (r == HOOKHTTP_BAD && why == NULL) abort();
  if (p->total > HOOKHTTP_RESP_MAX) abort();
  *status = p->status;
  return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static hookhttp_resp_t a, b;
  int sa, sb;
  size_t cut = size ? data[0] % (size + 1) : 0;
  int ra = run(&a, data, size, size, &sa);
  int rb = run(&b, data, size, cut, &sb);
  if (ra != rb) abort();
  if (ra == HOOKHTTP_DONE && (sa != sb || sa < 200 || sa > 599)) abort();
  return 0;
}
