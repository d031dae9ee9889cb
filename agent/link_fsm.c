/* Reconnect state machine of an outbound link: see link_fsm.h. */
#include "link_fsm.h"

long long link_fsm_delay_ms(unsigned n, long long cap_ms, double r) {
  long long d = LINK_FSM_BASE_MS;
  if (r < 0) r = 0;
  if (r > 1) r = 1;
  /* Doubling stops at the cap, so no shift can overflow whatever |n| is. */
  for (unsigned i = 0; i < n && d < cap_ms; i++) d *= 2;
  if (d > cap_ms) d = cap_ms;
  return (long long)((double)d * r);
}

void link_fsm_init(link_fsm_t *f, double now) {
  f->state = LINK_FSM_IDLE;
  f->attempt = 0;
  f->since = now;
  f->retry_at = 0;
  f->connects = f->failures = 0;
}

void link_fsm_start(link_fsm_t *f, double now) {
  if (f->state != LINK_FSM_IDLE) return;
  f->state = LINK_FSM_BACKOFF;
  f->attempt = 0;
  f->since = now;
  f->retry_at = now;
}

int link_fsm_due(const link_fsm_t *f, double now) {
  return f->state == LINK_FSM_BACKOFF && now >= f->retry_at;
}

void link_fsm_connecting(link_fsm_t *f, double now) {
  f->state = LINK_FSM_CONNECTING;
  f->since = now;
  f->connects++;
}

void link_fsm_up(link_fsm_t *f, double now) {
  f->state = LINK_FSM_UP;
  f->since = now;
}

long long link_fsm_failed(link_fsm_t *f, double now, long long cap_ms, double r) {
  if (f->state == LINK_FSM_UP && now - f->since >= LINK_FSM_STABLE_S) f->attempt = 0;
  long long ms = link_fsm_delay_ms(f->attempt, cap_ms, r);
  if (f->attempt < 64) f->attempt++;
  f->failures++;
  f->state = LINK_FSM_BACKOFF;
  f->since = now;
  f->retry_at = now + (double)ms / 1000.0;
  return ms;
}

void link_fsm_stop(link_fsm_t *f, double now) {
  f->state = LINK_FSM_IDLE;
  f->attempt = 0;
  f->since = now;
  f->retry_at = 0;
}

const char *link_fsm_state_name(link_fsm_state_t s) {
  switch (s) {
  case LINK_FSM_IDLE: return "down";
  case LINK_FSM_BACKOFF: return "backoff";
  case LINK_FSM_CONNECTING: return "connecting";
  case LINK_FSM_UP: return "up";
  }
  return "down";
}
