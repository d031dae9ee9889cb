/* Parent addresses handed to children: see advert.h. */
#include "advert.h"

#include <stdio.h>
#include <string.h>

/* wildcard_port returns the ":port" part of |adv| when its host is a
 * wildcard, else NULL. */
static const char *wildcard_port(const char *adv) {
  static const char *const hosts[] = {"", "0.0.0.0", "[::]", "[0:0:0:0:0:0:0:0]"};
  const char *colon = adv[0] == '[' ? strstr(adv, "]:") : strrchr(adv, ':');
  if (colon == NULL) return NULL;
  if (adv[0] == '[') colon++; /* past the bracket */
  size_t hl = (size_t)(colon - adv);
  for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
    if (strlen(hosts[i]) == hl && memcmp(adv, hosts[i], hl) == 0) return colon;
  return NULL;
}

int advert_parent_addr(const char *adv, const char *ip, char *out, size_t outlen) {
  const char *port = wildcard_port(adv);
  int n;
  if (port != NULL && ip != NULL && ip[0] != '\0' && strlen(ip) < 64) {
    if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, '.') != NULL) ip += 7; /* mapped */
    n = snprintf(out, outlen, strchr(ip, ':') ? "[%s]%s" : "%s%s", ip, port);
    if (n < 0 || (size_t)n >= outlen) return -1;
    return 1;
  }
  n = snprintf(out, outlen, "%s", adv);
  return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
