/* The control channel's codec: the one place Request and Response messages
 * are decoded, with the size cap and the field bounds of docs/protocol.md.
 * Callers get protobuf-c structs and free them with the matching free; the
 * agent goes through agentmsg.h instead and sees plain structs. */
#ifndef CASCADE_CTLMSG_H
#define CASCADE_CTLMSG_H

#include <stddef.h>
#include <stdint.h>

#include "control.pb-c.h"
#include "ctlmsg_bounds.h"
#include "relaymsg.h"

/* ctlmsg_decode_request decodes and checks a Request. NULL when the bytes
 * are over the cap, do not decode, carry no body, or break a bound; |why|
 * then says which (for a rate-limited log line). */
Cascade__Control__Request *ctlmsg_decode_request(const uint8_t *buf, size_t len, char *why,
                                                 size_t whylen);
void ctlmsg_free_request(Cascade__Control__Request *r);

/* ctlmsg_decode_response is the same for a Response (agent side). Its
 * relay requests are not judged here, only counted: each is judged alone
 * with ctlmsg_relay_request_check before use, so that one bad request fails
 * by itself and the rest of the message (configuration, other relays)
 * still applies. */
Cascade__Control__Response *ctlmsg_decode_response(const uint8_t *buf, size_t len, char *why,
                                                   size_t whylen);
void ctlmsg_free_response(Cascade__Control__Response *r);

/* ctlmsg_relay_request_check judges one RelayRequest against the relay
 * bounds (relaybounds.h): 0, or -1 with |why| saying which. */
int ctlmsg_relay_request_check(const Cascade__Control__RelayRequest *q, char *why,
                               size_t whylen);

/* ctlmsg_relay_request_wire points |out| at |in|'s fields, its headers
 * through |hv| and |hp| (|in->nheaders| of each, the caller's). */
void ctlmsg_relay_request_wire(const relay_request_t *in, Cascade__Control__RelayRequest *out,
                               Cascade__Control__Header *hv, Cascade__Control__Header **hp);

/* ctlmsg_relay_request_judge is ctlmsg_relay_request_check of |in| (the
 * node's own judgement, before the request is sent). */
int ctlmsg_relay_request_judge(const relay_request_t *in, char *why, size_t whylen);

/* ctlmsg_relay_response_view points |out| at decoded RelayResponse |m|'s
 * fields (valid while |m| is), its headers through |hv| (room for
 * CTLMSG_RELAY_HEADERS_MAX, the decoder's bound). */
void ctlmsg_relay_response_view(const Cascade__Control__RelayResponse *m, relay_response_t *out,
                                relay_header_t *hv);

/* ctlmsg_pack_request / ctlmsg_pack_response serialise into a malloc'd
 * buffer; NULL on OOM or when the result would exceed the cap. */
uint8_t *ctlmsg_pack_request(const Cascade__Control__Request *r, size_t *len);
uint8_t *ctlmsg_pack_response(const Cascade__Control__Response *r, size_t *len);

/* ctlmsg_text_ok tells whether |s| is at most |max| bytes of UTF-8 text
 * without control characters (1 = ok). */
int ctlmsg_text_ok(const char *s, size_t max);

#endif
