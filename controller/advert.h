/* Where children dial their parent: the address the parent advertised
 * (node.advertise, else its cascadeserver.quic.listenaddr), with a wildcard
 * host completed by the address its control connection comes from. Pure. */
#ifndef CASCADE_ADVERT_H
#define CASCADE_ADVERT_H

#include <stddef.h>

/* advert_parent_addr writes to |out| what children of a parent that
 * advertised |adv| dial: |adv| itself, unless its host is a wildcard
 * (":44944", "0.0.0.0:44944", "[::]:44944"), which |ip| (the parent's
 * control connection source, IPv4, IPv6 or IPv4-mapped IPv6) replaces.
 * Returns 1 when it completed a wildcard, 0 when |out| is |adv| as it is
 * (no wildcard, or no usable |ip|), -1 when |out| is too small. */
int advert_parent_addr(const char *adv, const char *ip, char *out, size_t outlen);

#endif
