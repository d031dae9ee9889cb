/* The media path as a library (RTMP, FLV, the stream hub; QUIC later). It
 * knows nothing of the agent or the controller. */
#ifndef CASCADE_DATAPLANE_H
#define CASCADE_DATAPLANE_H

/* dp_version names the data plane's wire version. */
const char *dp_version(void);

#endif
