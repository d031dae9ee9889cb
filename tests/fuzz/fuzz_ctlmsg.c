/* Fuzz target for the control channel codec: any bytes either decode into
 * a message that passes the bounds of docs/protocol.md or are refused with
 * a reason, as a Request and as a Response, without a memory error; what
 * decodes packs again within the cap.
 *
 * The same bytes, split at NULs into method, path, query, header name and
 * value, also make an API relay request: whatever the controller's check
 * (relaybounds_target) accepts, the agent's (ctlmsg_relay_request_check)
 * accepts; and a poll answer carrying it between two good requests always
 * decodes, with the good ones and the configuration intact.
 *
 * The agent's side of the codec (agentmsg.c) reads the same bytes as a
 * Response: it accepts exactly what ctlmsg accepts, and every relay request
 * and the configuration of what it accepts convert without a memory error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agentmsg.h"
#include "ctlmsg.h"
#include "relaybounds.h"
#include "relpath.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* part copies the |i|th NUL-separated piece of the input (NUL-terminated). */
static char *part(const uint8_t *data, size_t size, int i) {
  size_t s = 0;
  for (; i > 0 && s < size; s++)
    if (data[s] == 0) i--;
  size_t e = s;
  while (e < size && data[e] != 0) e++;
  char *p = malloc(e - s + 1);
  if (p == NULL) abort();
  memcpy(p, data + s, e - s);
  p[e - s] = '\0';
  return p;
}

static void relay_request(const uint8_t *data, size_t size) {
  char *method = part(data, size, 0), *path = part(data, size, 1), *query = part(data, size, 2);
  char *hname = part(data, size, 3), *hvalue = part(data, size, 4), why[128], msg[300];
  /* The path as the caller sent it, repeated to near the bound when the
   * input asks, so that encoding growth is met. */
  size_t pl = strlen(path), reps = size && (data[0] & 7) == 0 && pl ? 1400 / pl + 1 : 1;
  size_t rawlen = 1 + pl * reps;
  char *raw = malloc(rawlen + 1), *norm = malloc(rawlen + 1), *enc = malloc(3 * rawlen + 1);
  if (raw == NULL || norm == NULL || enc == NULL) abort();
  raw[0] = '/';
  for (size_t i = 0; i < reps; i++) memcpy(raw + 1 + i * pl, path, pl);
  raw[rawlen] = '\0';

  Cascade__Control__Header h = CASCADE__CONTROL__HEADER__INIT, *hp[1] = {&h};
  h.name = hname;
  h.value = hvalue;
  Cascade__Control__RelayRequest q[3], *qp[3];
  for (int i = 0; i < 3; i++) {
    cascade__control__relay_request__init(&q[i]);
    q[i].id = (uint64_t)i + 1;
    q[i].method = "GET";
    q[i].path = "/api/stream/list";
    q[i].query = "";
    qp[i] = &q[i];
  }
  if (relaybounds_target(method, raw, rawlen, query, norm, rawlen + 1, enc, 3 * rawlen + 1, msg,
                         sizeof(msg)) == 0) {
    Cascade__Control__RelayRequest c = q[1];
    c.method = method;
    c.path = enc;
    c.query = query;
    if (ctlmsg_relay_request_check(&c, why, sizeof(why)) != 0) abort();
    const char *nwhy;
    char *again = malloc(strlen(enc) + 1);
    if (again == NULL) abort();
    if (relpath_normalize(enc, strlen(enc), again, strlen(enc) + 1, &nwhy) != 0 ||
        strcmp(again, norm) != 0)
      abort();
    free(again);
  }
  /* Whatever the middle request holds, the answer decodes. */
  q[1].method = method;
  q[1].path = raw;
  q[1].query = query;
  q[1].headers = hp;
  q[1].n_headers = 1;
  Cascade__Control__Response r = CASCADE__CONTROL__RESPONSE__INIT;
  Cascade__Control__Status st = CASCADE__CONTROL__STATUS__INIT;
  Cascade__Control__Config cf = CASCADE__CONTROL__CONFIG__INIT;
  st.message = "";
  cf.generation = 7;
  r.status = &st;
  r.body_case = CASCADE__CONTROL__RESPONSE__BODY_CONFIG;
  r.config = &cf;
  r.relay = qp;
  r.n_relay = 3;
  size_t len;
  uint8_t *buf = ctlmsg_pack_response(&r, &len);
  if (buf == NULL) abort();
  Cascade__Control__Response *d = ctlmsg_decode_response(buf, len, why, sizeof(why));
  if (d == NULL || d->n_relay != 3 || d->config->generation != 7) abort();
  if (ctlmsg_relay_request_check(d->relay[0], why, sizeof(why)) != 0 ||
      ctlmsg_relay_request_check(d->relay[2], why, sizeof(why)) != 0)
    abort();
  ctlmsg_relay_request_check(d->relay[1], why, sizeof(why));
  ctlmsg_free_response(d);
  /* As the agent reads it: the good ones whole, the middle one judged alone. */
  agentmsg_response_t a;
  relay_header_t hv[RELAYBOUNDS_HEADERS_MAX];
  relay_request_t rq;
  if (agentmsg_decode_response(buf, len, &a, why, sizeof(why)) != 0 || a.nrelay != 3 ||
      a.config.generation != 7)
    abort();
  if (agentmsg_relay_request(&a, 0, &rq, hv, why, sizeof(why)) != 0 || rq.id != 1 ||
      strcmp(rq.path, "/api/stream/list") != 0 ||
      agentmsg_relay_request(&a, 2, &rq, hv, why, sizeof(why)) != 0 || rq.id != 3)
    abort();
  if (agentmsg_relay_request(&a, 1, &rq, hv, why, sizeof(why)) == 0 &&
      (rq.nheaders != 1 || strcmp(rq.method, method) != 0 || strcmp(rq.headers[0].name, hname)))
    abort();
  if (rq.id != 2) abort();
  agentmsg_response_free(&a);
  free(buf);
  free(raw);
  free(norm);
  free(enc);
  free(method);
  free(path);
  free(query);
  free(hname);
  free(hvalue);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char why[128];
  size_t len;

  relay_request(data, size);

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
  int decoded = r != NULL;
  if (r) {
    if (r->status == NULL) abort();
    uint8_t *buf = ctlmsg_pack_response(r, &len);
    if (buf == NULL) abort();
    free(buf);
    ctlmsg_free_response(r);
  }
  agentmsg_response_t a;
  why[0] = '\0';
  int arv = agentmsg_decode_response(data, size, &a, why, sizeof(why));
  if ((arv == 0) != decoded || (arv != 0 && why[0] == '\0')) abort();
  if (arv == 0) {
    relay_header_t hv[RELAYBOUNDS_HEADERS_MAX];
    relay_request_t rq;
    agentmsg_config_t copy;
    for (size_t i = 0; i < a.nrelay; i++)
      if (agentmsg_relay_request(&a, i, &rq, hv, why, sizeof(why)) == 0 &&
          (rq.nheaders > RELAYBOUNDS_HEADERS_MAX || rq.method == NULL || rq.path == NULL))
        abort();
    if (agentmsg_config_copy(&a.config, &copy) != 0 || copy.nchildren != a.config.nchildren ||
        copy.rules.npull != a.config.rules.npull)
      abort();
    agentmsg_config_free(&copy);
    agentmsg_response_free(&a);
  }
  return 0;
}
