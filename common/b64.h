/* Base64 (RFC 4648) standard alphabet with padding, and base64url without. */
#ifndef CASCADE_B64_H
#define CASCADE_B64_H

#include <stddef.h>
#include <stdint.h>

/* b64_encoded_len is the length of the padded encoding of |n| bytes, without
 * NUL (the unpadded URL-safe form is never longer). */
size_t b64_encoded_len(size_t n);

/* b64_encode writes the padded standard encoding of |in| and a NUL to |out|.
 * Returns its length, or -1 when |outlen| is too small. */
long b64_encode(const uint8_t *in, size_t n, char *out, size_t outlen);

/* b64url_encode writes the unpadded URL-safe encoding ('-' and '_' for '+'
 * and '/') and a NUL. Returns its length, or -1 when |outlen| is too small. */
long b64url_encode(const uint8_t *in, size_t n, char *out, size_t outlen);

/* b64_decode decodes the padded standard encoding of |in| (|n| chars),
 * strictly: no whitespace, correct padding, zero trailing bits, so each byte
 * string has one accepted encoding. |outlen| must hold the decoded length
 * (not the rounded-up 3/4 of |n|). Returns the number of bytes written to
 * |out|, or -1 on bad input or short |outlen|; after -1, |out| may hold
 * partial output. */
long b64_decode(const char *in, size_t n, uint8_t *out, size_t outlen);

/* b64url_decode decodes the unpadded URL-safe encoding of |in| (|n| chars),
 * strictly like b64_decode: no '=', no whitespace, a length that is not
 * 1 mod 4, zero trailing bits. Returns the number of bytes written, or -1
 * on bad input or short |outlen|. */
long b64url_decode(const char *in, size_t n, uint8_t *out, size_t outlen);

#endif
