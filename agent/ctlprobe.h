/* Why the controller does not answer: nng's TLS dialer retries a handshake
 * that failed without saying why, so when a control request gets no answer
 * the agent makes one TLS handshake of its own to the controller, verifying
 * as the control channel does, and reports what went wrong (a refused
 * certificate, a name mismatch, a refused connection). Blocking: run it off
 * the loop (agent/ctlc.c starts it on a thread of its own). */
#ifndef CASCADE_CTLPROBE_H
#define CASCADE_CTLPROBE_H

#include <stddef.h>

/* ctlprobe_parse_url splits an nng URL "tls+tcp://host:port" (also tcp://,
 * tls+tcp4/6://, "[v6]:port") into |host| and |port|. 0 or -1. */
int ctlprobe_parse_url(const char *url, char *host, size_t hlen, char *port, size_t plen);

/* ctlprobe_tls connects to |url| within |timeout_ms| and makes a TLS
 * handshake that trusts |ca_pem| only and expects |servername|. Returns 0
 * when it succeeded, else -1 with the reason in |why|, said for an
 * operator. */
int ctlprobe_tls(const char *url, const char *ca_pem, const char *servername, int timeout_ms,
                 char *why, size_t whylen);

#endif
