/* The web console: static files under /console/, served by the REST API's
 * HTTP server with a strict Content-Security-Policy (docs/console.md). */
#ifndef CASCADE_CONSOLE_H
#define CASCADE_CONSOLE_H

#include "http.h"

/* console_owns says whether |url| (decoded path) is the console's: "/",
 * "/console" or anything under "/console/". */
int console_owns(const char *url);

/* console_serve answers a request console_owns: a file, a redirect to
 * /console/, 304, 404 or 405. Needs no token: the files hold no data. */
int console_serve(http_req_t *r);

#endif
