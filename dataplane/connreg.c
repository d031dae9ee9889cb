/* The connection registry: see connreg.h. */
#include "connreg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void connreg_init(connreg_t *r) {
  memset(r, 0, sizeof(*r));
  ratewin_init(&r->egress, CONNREG_EGRESS_WINDOW_S);
}

void connreg_fini(connreg_t *r) {
  while (r->head) connreg_remove(r, r->head);
}

void connreg_set_limits(connreg_t *r, unsigned max_players, uint64_t max_bps) {
  r->max_players = max_players;
  r->max_bps = max_bps;
}

int connreg_add(connreg_t *r, connreg_ent_t *e, int kind, const char *protocol,
                const char *path, const char *addr, const uint64_t *bytes_in,
                const uint64_t *bytes_out, double now, connreg_kick_fn kick, void *kick_arg) {
  if (e->id) connreg_remove(r, e);
  char *p = strdup(path ? path : "");
  if (p == NULL) return -1;
  e->path = p;
  e->id = ++r->last_id;
  e->kind = kind;
  e->kicked = 0;
  e->protocol = protocol ? protocol : "";
  snprintf(e->addr, sizeof(e->addr), "%s", addr ? addr : "");
  e->bytes_in = bytes_in;
  e->bytes_out = bytes_out;
  e->since = now;
  e->kick = kick;
  e->kick_arg = kick_arg;
  e->next = NULL;
  e->prev = r->tail;
  if (r->tail) r->tail->next = e;
  else r->head = e;
  r->tail = e;
  r->count++;
  return 0;
}

void connreg_remove(connreg_t *r, connreg_ent_t *e) {
  if (e == NULL || e->id == 0) return;
  if (e->prev) e->prev->next = e->next;
  else r->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else r->tail = e->prev;
  e->prev = e->next = NULL;
  e->id = 0;
  free(e->path);
  e->path = NULL;
  r->count--;
}

connreg_ent_t *connreg_find(connreg_t *r, uint64_t id) {
  if (id == 0) return NULL;
  for (connreg_ent_t *e = r->head; e; e = e->next)
    if (e->id == id) return e;
  return NULL;
}

/* kick_one asks the owner of |e| to end it; |e| may be gone afterwards. */
static void kick_one(connreg_t *r, connreg_ent_t *e) {
  e->kicked = 1;
  r->kicks++;
  if (e->kick) e->kick(e, e->kick_arg);
}

int connreg_kick(connreg_t *r, uint64_t id) {
  connreg_ent_t *e = connreg_find(r, id);
  if (e == NULL) return -1;
  kick_one(r, e);
  return 0;
}

unsigned connreg_kick_path(connreg_t *r, const char *path, int kind) {
  unsigned n = 0;
  for (;;) {
    connreg_ent_t *e = r->head;
    while (e && (e->kicked || e->kind != kind || strcmp(e->path, path) != 0)) e = e->next;
    if (e == NULL) return n;
    kick_one(r, e);
    n++;
  }
}

unsigned connreg_count_path(const connreg_t *r, const char *path, int kind) {
  unsigned n = 0;
  for (const connreg_ent_t *e = r->head; e; e = e->next)
    if (e->kind == kind && strcmp(e->path, path) == 0) n++;
  return n;
}

uint64_t connreg_egress_bps(const connreg_t *r, double now) {
  return ratewin_bps(&r->egress, now);
}

int connreg_play_check(connreg_t *r, unsigned players, double now, char *why, size_t len) {
  if (r->max_players && players >= r->max_players) {
    r->refused_players++;
    snprintf(why, len, "players per stream limit reached (%u)", r->max_players);
    return CONNREG_EPLAYERS;
  }
  if (r->max_bps && connreg_egress_bps(r, now) >= r->max_bps) {
    r->refused_bandwidth++;
    snprintf(why, len, "node bandwidth limit reached");
    return CONNREG_EBANDWIDTH;
  }
  return 0;
}
