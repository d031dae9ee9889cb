/* Placeholder until the hook client lands: no hook is ever configured. */
#include "hooks.h"

#include <stdlib.h>

struct hooks {
  int unused;
};

hooks_t *hooks_new(struct ev_loop *loop) {
  (void)loop;
  return calloc(1, sizeof(hooks_t));
}

void hooks_free(hooks_t *h) { free(h); }

int hooks_configure(hooks_t *h, const hook_conf *conf) {
  (void)h;
  (void)conf;
  return 0;
}

int hooks_check(hooks_t *h, const hook_req *r, hook_done_fn done, void *arg,
                hook_call_t **call, const char **reason) {
  (void)h;
  (void)r;
  (void)done;
  (void)arg;
  *call = NULL;
  *reason = "no hook configured";
  return HOOK_DENY;
}

void hooks_cancel(hook_call_t *call) { (void)call; }

void hooks_notify(hooks_t *h, const hook_req *r) {
  (void)h;
  (void)r;
}
