/* Stand-alone driver for the fuzz targets when libFuzzer is not used: runs
 * every file of the corpus directories given, then -runs=N deterministic
 * mutations of them (bit flips, truncation, byte insertion, splicing). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DRIVER_MAX_INPUT (64 * 1024)
#define MAX_SEEDS 4096

typedef struct {
  uint8_t *data;
  size_t len;
} seed_t;

static seed_t seeds[MAX_SEEDS];
static size_t nseeds;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void add_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL || nseeds == MAX_SEEDS) {
    if (f) fclose(f);
    return;
  }
  uint8_t *buf = malloc(DRIVER_MAX_INPUT);
  size_t n = fread(buf, 1, DRIVER_MAX_INPUT, f);
  fclose(f);
  seeds[nseeds].data = buf;
  seeds[nseeds].len = n;
  nseeds++;
  /* Run each seed exactly as it is, in a buffer of its own size. */
  uint8_t *exact = malloc(n ? n : 1);
  memcpy(exact, buf, n);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
}

static void add_path(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "driver: %s: not found\n", path);
    exit(1);
  }
  if (!S_ISDIR(st.st_mode)) {
    add_file(path);
    return;
  }
  struct dirent **ents;
  int n = scandir(path, &ents, NULL, alphasort);
  for (int i = 0; i < n; i++) {
    if (ents[i]->d_name[0] != '.') {
      char p[4096];
      snprintf(p, sizeof(p), "%s/%s", path, ents[i]->d_name);
      add_file(p);
    }
    free(ents[i]);
  }
  free(ents);
}

int main(int argc, char **argv) {
  long runs = 0;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "-runs=", 6) == 0)
      runs = atol(argv[i] + 6);
    else
      add_path(argv[i]);
  }
  uint8_t *buf = malloc(DRIVER_MAX_INPUT);
  for (long r = 0; r < runs; r++) {
    size_t len = 0;
    if (nseeds > 0) {
      const seed_t *s = &seeds[rng() % nseeds];
      len = s->len;
      memcpy(buf, s->data, len);
    }
    int nmut = 1 + (int)(rng() % 8);
    for (int m = 0; m < nmut; m++) {
      switch (rng() % 6) {
      case 0: /* flip a bit */
        if (len) buf[rng() % len] ^= (uint8_t)(1u << (rng() % 8));
        break;
      case 1: /* set a random byte */
        if (len) buf[rng() % len] = (uint8_t)rng();
        break;
      case 2: /* truncate */
        if (len) len = rng() % len;
        break;
      case 3: /* insert a byte */
        if (len < DRIVER_MAX_INPUT) {
          size_t at = len ? rng() % (len + 1) : 0;
          memmove(buf + at + 1, buf + at, len - at);
          buf[at] = (uint8_t)"{}[]:,\"\\\n -#&'0aZ\x00\xff"[rng() % 20];
          len++;
        }
        break;
      case 4: /* duplicate a chunk */
        if (len && len < DRIVER_MAX_INPUT / 2) {
          size_t at = rng() % len, n = 1 + rng() % (len - at);
          memmove(buf + at + n, buf + at, len - at);
          len += n;
        }
        break;
      case 5: /* splice another seed */
        if (nseeds > 1) {
          const seed_t *o = &seeds[rng() % nseeds];
          size_t at = len ? rng() % len : 0;
          size_t n = o->len < DRIVER_MAX_INPUT - at ? o->len : DRIVER_MAX_INPUT - at;
          memcpy(buf + at, o->data, n);
          if (at + n > len) len = at + n;
        }
        break;
      }
    }
    uint8_t *exact = malloc(len ? len : 1);
    memcpy(exact, buf, len);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
  }
  free(buf);
  for (size_t i = 0; i < nseeds; i++) free(seeds[i].data);
  printf("driver: %zu seeds, %ld mutated runs, no crash\n", nseeds, runs);
  return 0;
}
