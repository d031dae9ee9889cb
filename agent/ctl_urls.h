/* The controller URLs an agent dials: controller.url with every host name
 * that resolves to several addresses counted as several URLs (one per
 * address), so a replica set behind one DNS name fails over like a list. */
#ifndef CASCADE_CTL_URLS_H
#define CASCADE_CTL_URLS_H

#include <stddef.h>

#define CTL_URLS_PER_NAME 8   /* addresses taken from one name */
#define CTL_URLS_MAX 64       /* URLs after expansion */

/* ctl_urls_split splits "tls+tcp://host:port" (also tcp://, tls+tcp4/6://,
 * tcp4/6://, "[v6]:port") into |host| and |port| (1..65535). 0 or -1. */
int ctl_urls_split(const char *url, char *host, size_t hlen, char *port, size_t plen);

/* ctl_urls_host_is_numeric tells whether |url|'s host is an IP literal
 * (or the URL cannot be split: the connection then says so). */
int ctl_urls_host_is_numeric(const char *url);

/* ctl_urls_expand appends to |out| (|*n| used of |max|) one URL per numeric
 * address of |addrs| (|naddrs|), written as |url| with its host replaced
 * ("[v6]" bracketed); duplicates (of |out| so far) are skipped. With no
 * address, |url| itself. Pure. Returns 0 or -1 (out of memory; what was
 * appended stays). */
int ctl_urls_expand(const char *url, const char *const *addrs, size_t naddrs, char **out,
                    size_t max, size_t *n);

/* ctl_urls_resolve expands every URL of |in| (|nin|) with getaddrinfo (TCP;
 * a name that does not resolve stays as it is). Blocking: run
 * it off the loop. Returns a malloc'd array of malloc'd URLs in |*out|, at
 * most CTL_URLS_MAX, and their number, or -1 out of memory. */
int ctl_urls_resolve(char *const *in, size_t nin, char ***out, size_t *nout);

/* ctl_urls_origin tells which entry of |in| (|nin|) URL |u| of an
 * expansion came from: the same scheme and port, and either |in|'s entry
 * itself or a numeric host for an entry with a name; |nin| when none. */
size_t ctl_urls_origin(char *const *in, size_t nin, const char *u);

/* ctl_urls_free frees |n| URLs of |v| and |v|; accepts NULL. */
void ctl_urls_free(char **v, size_t n);

#endif
