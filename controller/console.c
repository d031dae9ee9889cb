/* The web console's files: see console.h. */
#include "console.h"

#include <microhttpd.h>
#include <string.h>

#include "console_files.h"

/* No inline script or style, no eval, nothing framed, nothing fetched from
 * elsewhere: the console talks to this origin only (the player reaches
 * nodes through the API relay), and MSE playback needs blob: media. */
#define CONSOLE_CSP                                                                   \
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "  \
  "media-src 'self' blob:; connect-src 'self'; worker-src 'self' blob:; "            \
  "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

int console_owns(const char *url) {
  return strcmp(url, "/") == 0 || strcmp(url, "/console") == 0 ||
         strncmp(url, "/console/", 9) == 0;
}

static const console_file_t *find(const char *url) {
  if (strcmp(url, "/console/") == 0) url = "/console/index.html";
  for (const console_file_t *f = console_files; f->path; f++)
    if (strcmp(f->path, url) == 0) return f;
  return NULL;
}

/* answer queues |resp| with the headers every console answer carries. */
static int answer(http_req_t *r, int status, struct MHD_Response *resp, const char *cache) {
  if (resp == NULL) return MHD_NO;
  MHD_add_response_header(resp, "Content-Security-Policy", CONSOLE_CSP);
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
  MHD_add_response_header(resp, "X-Frame-Options", "DENY");
  MHD_add_response_header(resp, "Cache-Control", cache);
  r->status = status;
  int rv = MHD_queue_response(r->conn, (unsigned)status, resp);
  MHD_destroy_response(resp);
  return rv;
}

static int answer_text(http_req_t *r, int status, const char *text, const char *hname,
                       const char *hval) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
  if (resp == NULL) return MHD_NO;
  MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
  if (hname) MHD_add_response_header(resp, hname, hval);
  return answer(r, status, resp, "no-store");
}

int console_serve(http_req_t *r) {
  if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0)
    return answer_text(r, 405, "method not allowed\n", "Allow", "GET, HEAD");
  if (strcmp(r->url, "/") == 0 || strcmp(r->url, "/console") == 0)
    return answer_text(r, 302, "/console/\n", "Location", "/console/");
  const console_file_t *f = find(r->url);
  if (f == NULL) return answer_text(r, 404, "not found\n", NULL, NULL);
  /* The files change only with the binary: a browser revalidates each time
   * (no-cache) and an unchanged file costs a 304. */
  const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match");
  struct MHD_Response *resp;
  int status = 200;
  if (inm != NULL && strstr(inm, f->etag) != NULL) {
    status = 304;
    resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  } else {
    resp = MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (resp) MHD_add_response_header(resp, "Content-Type", f->ctype);
  }
  if (resp) MHD_add_response_header(resp, "ETag", f->etag);
  return answer(r, status, resp, "no-cache");
}
