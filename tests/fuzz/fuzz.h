/* Helpers shared by the libFuzzer targets: a reader that turns the fuzzer's bytes into choices,
 * and an invariant check that stays on in every build type. Header-only, because CMake makes
 * every tests/fuzz/fuzz_<target>.c an executable. */
#ifndef IMAPQ_TEST_FUZZ_H
#define IMAPQ_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/tmpdir.h"

/* Aborts with the failed condition, so libFuzzer records the input as a crash. */
#define fuzz_check(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* Makes a fresh folder for a target's stores in dir (TMPDIR_LEN bytes, see tests/unit/tmpdir.h):
 * under /dev/shm when it exists, because recovery syncs files and memory is faster than disk. */
static inline void fuzz_tmpdir_make(char *dir)
{
	strcpy(dir, "/dev/shm/imapq-fuzz-XXXXXX");
	if (mkdtemp(dir) == NULL && !tmpdir_make(dir))
		abort();
}

/* The unread part of an input. Reads past its end yield zeros, so every input is usable. */
struct fuzz_input {
	const uint8_t *p;
	size_t left;
};

static inline uint8_t fuzz_u8(struct fuzz_input *in)
{
	if (in->left == 0)
		return 0;
	in->left--;
	return *in->p++;
}

static inline uint16_t fuzz_u16(struct fuzz_input *in)
{
	uint16_t hi = fuzz_u8(in);
	return (uint16_t)(hi << 8 | fuzz_u8(in));
}

static inline uint32_t fuzz_u32(struct fuzz_input *in)
{
	uint32_t hi = fuzz_u16(in);
	return hi << 16 | fuzz_u16(in);
}

/* Takes up to n bytes; *len_r says how many there were. */
static inline const uint8_t *fuzz_bytes(struct fuzz_input *in, size_t n, size_t *len_r)
{
	const uint8_t *p = in->p;
	if (n > in->left)
		n = in->left;
	in->p += n;
	in->left -= n;
	*len_r = n;
	return p;
}

/* A copy of p[0..len) with a NUL after it, so C-string APIs see exactly those bytes (or
 * stop at an embedded NUL, as they would on the wire). The caller frees it. */
static inline char *fuzz_strndup(const void *p, size_t len)
{
	char *s = malloc(len + 1);
	if (s == NULL)
		abort();
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

#endif
