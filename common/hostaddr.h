/* Peer addresses as operators write them: "1.2.3.4:44944", "[2001:db8::1]:44944" or
 * "media-1.example.net:44944" (node.advertise, cascadeclient.server, a parent's
 * advertised address). Pure: nothing here resolves a name. */
#ifndef CASCADE_HOSTADDR_H
#define CASCADE_HOSTADDR_H

#include <stddef.h>

#define HOSTADDR_HOST_MAX 254 /* a DNS name is at most 253 bytes */

/* hostaddr_split splits |s| into |host| (brackets of an IPv6 literal
 * removed) and |port| (1..65535, decimal, no sign or leading zero). An
 * empty host (":44944") is returned as "". Returns 0 or -1 (|why| says
 * why). */
int hostaddr_split(const char *s, char *host, size_t hostlen, char *port, size_t portlen,
                   char *why, size_t whylen);

/* hostaddr_is_numeric tells whether |host| is an IPv4 or IPv6 literal. */
int hostaddr_is_numeric(const char *host);

/* hostaddr_is_name tells whether |host| is a DNS host name (RFC 1123
 * labels of letters, digits and '-', 1..63 bytes each, not starting or
 * ending with '-', 253 bytes at most, a final dot allowed, a last label
 * that is not all digits). */
int hostaddr_is_name(const char *host);

/* hostaddr_check accepts a dialable address: a numeric host or a host name,
 * and a port. Returns 0 or -1 with the reason in |why|. */
int hostaddr_check(const char *s, char *why, size_t whylen);

#endif
