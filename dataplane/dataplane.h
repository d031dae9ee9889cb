/* The media path as a library (RTMP, HTTP-FLV, FLV, the stream hub, the QUIC
 * endpoint and the push/pull relay over it). It knows nothing of the agent
 * or the controller. */
#ifndef CASCADE_DATAPLANE_H
#define CASCADE_DATAPLANE_H

/* dp_version names the data plane's wire version. */
const char *dp_version(void);

#endif
