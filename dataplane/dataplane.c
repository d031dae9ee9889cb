/* The data plane library: see docs/architecture.md. */
#include "dataplane.h"

const char *dp_version(void) { return "1"; }
