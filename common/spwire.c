/* The SP wire: see spwire.h. */
#include "spwire.h"

#include <stdlib.h>
#include <string.h>

#define ST_HEADER 0
#define ST_LENGTH 1
#define ST_ID 2
#define ST_BODY 3
#define BODY_FIRST 4096 /* the body buffer's first size; doubled as bytes come */

void spwire_header(uint8_t out[SPWIRE_HEADER_LEN], uint16_t proto) {
  out[0] = 0;
  out[1] = 'S';
  out[2] = 'P';
  out[3] = 0;
  out[4] = (uint8_t)(proto >> 8);
  out[5] = (uint8_t)proto;
  out[6] = 0;
  out[7] = 0;
}

void spwire_rx_init(spwire_rx_t *rx, size_t max) {
  memset(rx, 0, sizeof(*rx));
  rx->max = max;
  rx->peer = SPWIRE_PROTO_REQ;
  rx->state = ST_HEADER;
}

void spwire_rx_expect(spwire_rx_t *rx, uint16_t proto) { rx->peer = proto; }

void spwire_rx_free(spwire_rx_t *rx) {
  free(rx->body);
  rx->body = NULL;
  rx->cap = 0;
}

int spwire_rx_header_done(const spwire_rx_t *rx) { return rx->state != ST_HEADER; }

static uint64_t be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* fill copies into rx->word up to |want| bytes; 1 when it is full. */
static int fill(spwire_rx_t *rx, size_t want, const uint8_t *data, size_t len, size_t *off) {
  size_t n = want - rx->have;
  if (n > len - *off) n = len - *off;
  memcpy(rx->word + rx->have, data + *off, n);
  rx->have += n;
  *off += n;
  return rx->have == want;
}

/* hand_out gives the finished body to the caller and starts the next message. */
static int hand_out(spwire_rx_t *rx, uint32_t *id, uint8_t **body, size_t *bodylen) {
  if (rx->body == NULL && (rx->body = malloc(1)) == NULL) return SPWIRE_NOMEM;
  *id = rx->id;
  *body = rx->body;
  *bodylen = (size_t)rx->len;
  rx->body = NULL;
  rx->cap = 0;
  rx->have = 0;
  rx->state = ST_LENGTH;
  return SPWIRE_MESSAGE;
}

int spwire_rx_feed(spwire_rx_t *rx, const uint8_t *data, size_t len, size_t *used,
                   uint32_t *id, uint8_t **body, size_t *bodylen) {
  size_t off = 0;
  int rc = SPWIRE_MORE;
  while (off < len || (rx->state == ST_BODY && rx->have == rx->len)) {
    if (rx->state == ST_HEADER) {
      if (!fill(rx, SPWIRE_HEADER_LEN, data, len, &off)) break;
      uint8_t want[SPWIRE_HEADER_LEN];
      spwire_header(want, rx->peer);
      if (memcmp(rx->word, want, sizeof(want)) != 0) {
        rc = SPWIRE_BAD_HEADER;
        break;
      }
      rx->have = 0;
      rx->state = ST_LENGTH;
    } else if (rx->state == ST_LENGTH) {
      if (!fill(rx, SPWIRE_LEN_LEN, data, len, &off)) break;
      uint64_t n = be64(rx->word);
      if (n < SPWIRE_ID_LEN || n - SPWIRE_ID_LEN > rx->max) {
        rc = SPWIRE_TOO_LONG;
        break;
      }
      rx->len = n - SPWIRE_ID_LEN;
      rx->have = 0;
      rx->state = ST_ID;
    } else if (rx->state == ST_ID) {
      if (!fill(rx, SPWIRE_ID_LEN, data, len, &off)) break;
      rx->id = be32(rx->word);
      if (!(rx->id & SPWIRE_ID_BIT)) {
        rc = SPWIRE_BAD_ID;
        break;
      }
      rx->have = 0;
      rx->state = ST_BODY;
    } else {
      if (rx->have == rx->len) {
        rc = hand_out(rx, id, body, bodylen);
        break;
      }
      size_t n = (size_t)rx->len - rx->have;
      if (n > len - off) n = len - off;
      if (rx->have + n > rx->cap) {
        size_t cap = rx->cap ? rx->cap : BODY_FIRST;
        while (cap < rx->have + n) cap *= 2;
        if (cap > rx->len) cap = (size_t)rx->len;
        uint8_t *b = realloc(rx->body, cap);
        if (b == NULL) {
          rc = SPWIRE_NOMEM;
          break;
        }
        rx->body = b;
        rx->cap = cap;
      }
      memcpy(rx->body + rx->have, data + off, n);
      rx->have += n;
      off += n;
    }
  }
  *used = off;
  return rc;
}

size_t spwire_frame_len(size_t len) { return SPWIRE_LEN_LEN + SPWIRE_ID_LEN + len; }

void spwire_frame_head(uint8_t out[SPWIRE_LEN_LEN + SPWIRE_ID_LEN], uint32_t id, size_t len) {
  uint64_t n = (uint64_t)len + SPWIRE_ID_LEN;
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(n >> (56 - 8 * i));
  out[8] = (uint8_t)(id >> 24);
  out[9] = (uint8_t)(id >> 16);
  out[10] = (uint8_t)(id >> 8);
  out[11] = (uint8_t)id;
}

void spwire_frame(uint8_t *out, uint32_t id, const void *body, size_t len) {
  spwire_frame_head(out, id, len);
  if (len) memcpy(out + SPWIRE_LEN_LEN + SPWIRE_ID_LEN, body, len);
}
