/* Session reports, written and read back: see report.h. */
#include "report.h"

#include <stdio.h>
#include <string.h>

json_t *report_json(const ctlsrv_link_t *lv, size_t nlinks, const ctlsrv_stream_t *sv,
                    size_t nstreams, uint32_t total) {
  json_t *links = json_array(), *streams = json_array();
  for (size_t i = 0; links && i < nlinks; i++) {
    const ctlsrv_link_t *l = &lv[i];
    json_array_append_new(links, json_pack("[I,i,b,I,I]", (json_int_t)l->peer_id, l->role, l->up,
                                           (json_int_t)l->rtt_us, (json_int_t)l->up_since));
  }
  for (size_t i = 0; streams && i < nstreams; i++) {
    const ctlsrv_stream_t *st = &sv[i];
    json_t *players = json_array();
    for (size_t k = 0; players && k < st->nplayers; k++)
      json_array_append_new(players, json_pack("[s,I]", st->players[k].protocol,
                                               (json_int_t)st->players[k].count));
    json_array_append_new(streams, json_pack("[s,i,I,I,o]", st->path, st->origin,
                                             (json_int_t)st->origin_node, (json_int_t)st->since,
                                             players ? players : json_array()));
  }
  return json_pack("{s:o,s:o,s:I}", "links", links ? links : json_array(), "streams",
                   streams ? streams : json_array(), "total", (json_int_t)total);
}

static int int_at(const json_t *a, size_t i, json_int_t *v) {
  const json_t *e = json_array_get(a, i);
  if (!json_is_integer(e)) return -1;
  *v = json_integer_value(e);
  return 0;
}

int report_link(const json_t *report, int role, int64_t peer, ctlsrv_link_t *out) {
  const json_t *links = json_object_get(report, "links");
  size_t i;
  const json_t *l;
  json_array_foreach(links, i, l) {
    json_int_t p, r, rtt, since;
    const json_t *up = json_array_get(l, 2);
    if (json_array_size(l) != 5 || int_at(l, 0, &p) || int_at(l, 1, &r) || !json_is_boolean(up) ||
        int_at(l, 3, &rtt) || int_at(l, 4, &since) || rtt < 0)
      continue;
    if (r != role || p != peer) continue;
    memset(out, 0, sizeof(*out));
    out->peer_id = p;
    out->role = (int)r;
    out->up = json_is_true(up);
    out->rtt_us = (uint64_t)rtt;
    out->up_since = since;
    return 1;
  }
  return 0;
}

size_t report_streams(const json_t *report, int64_t node, const char *name,
                      void (*fn)(int64_t node, const char *name, const ctlsrv_stream_t *st,
                                 void *arg),
                      void *arg, uint32_t *total) {
  const json_t *streams = json_object_get(report, "streams"), *e;
  const json_t *t = json_object_get(report, "total");
  size_t i, n = 0;
  *total = json_is_integer(t) && json_integer_value(t) >= 0 && json_integer_value(t) <= UINT32_MAX
               ? (uint32_t)json_integer_value(t)
               : 0;
  json_array_foreach(streams, i, e) {
    ctlsrv_stream_t st;
    json_int_t origin, onode, since;
    const json_t *path = json_array_get(e, 0), *players = json_array_get(e, 4), *pl;
    if (json_array_size(e) != 5 || !json_is_string(path) || int_at(e, 1, &origin) ||
        int_at(e, 2, &onode) || int_at(e, 3, &since) || !json_is_array(players))
      continue;
    memset(&st, 0, sizeof(st));
    st.path = (char *)json_string_value(path);
    st.origin = (int)origin;
    st.origin_node = onode;
    st.since = since;
    size_t k;
    json_array_foreach(players, k, pl) {
      json_int_t count;
      const json_t *proto = json_array_get(pl, 0);
      if (st.nplayers >= CTLSRV_STREAM_PROTOS || json_array_size(pl) != 2 ||
          !json_is_string(proto) || int_at(pl, 1, &count) || count < 0 || count > UINT32_MAX)
        continue;
      snprintf(st.players[st.nplayers].protocol, sizeof(st.players[0].protocol), "%s",
               json_string_value(proto));
      st.players[st.nplayers++].count = (unsigned)count;
    }
    fn(node, name, &st, arg);
    n++;
  }
  return n;
}
