/* The web console's files, embedded at build time (embed_console.cmake
 * writes console_files.c from controller/console/). */
#ifndef CASCADE_CONSOLE_FILES_H
#define CASCADE_CONSOLE_FILES_H

#include <stddef.h>

typedef struct {
  const char *path;          /* URL path: "/console/app.js" */
  const char *ctype;         /* Content-Type */
  const char *etag;          /* quoted, from the content's SHA-256 */
  const unsigned char *data;
  size_t len;
} console_file_t;

/* Every file, ending with an entry whose path is NULL. */
extern const console_file_t console_files[];

#endif
