/* Temporary folders for tests: one template, one maker, one remover. Header-only, because CMake
 * makes every tests/unit/test_*.c an executable. */
#ifndef IMAPQ_TEST_TMPDIR_H
#define IMAPQ_TEST_TMPDIR_H

#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mkdtemp() replaces the trailing X's with a unique suffix. */
#define TMPDIR_TEMPLATE "/tmp/imapq-test-XXXXXX"
/* Bytes of a path buffer for a temporary folder (the template and its NUL fit). */
#define TMPDIR_LEN 64

/* Removes one entry of a folder (nftw callback). */
static inline int tmpdir_rm_entry(const char *path, const struct stat *st, int flag,
				  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Makes a fresh temporary folder and writes its path to dir (TMPDIR_LEN bytes); false when it
 * could not be made. */
static inline bool tmpdir_make(char *dir)
{
	strcpy(dir, TMPDIR_TEMPLATE);
	return mkdtemp(dir) != NULL;
}

/* Removes folder dir and everything in it. */
static inline void tmpdir_remove(const char *dir)
{
	nftw(dir, tmpdir_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
