/* The journal files of a test's data folder: its newest segment, and a copy of the folder to
 * cut and reopen. Header-only like tmpdir.h; include it after cmocka.h. */
#ifndef IMAPQ_TEST_JOURNAL_FILES_H
#define IMAPQ_TEST_JOURNAL_FILES_H

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/tmpdir.h"

/* The newest segment file of a data folder. */
static inline void newest_segment(const char *dir, char *path, size_t cap)
{
	char jdir[256], best[256] = "";
	snprintf(jdir, sizeof jdir, "%s/journal", dir);
	DIR *d = opendir(jdir);
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));)
		if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof best, "%s", e->d_name);
	closedir(d);
	assert_true(best[0] != '\0');
	snprintf(path, cap, "%s/%s", jdir, best);
}

/* Copies folder src (one level of subfolders) into a fresh folder, returned in dst. */
static inline void copy_tree(const char *src, char *dst)
{
	assert_true(tmpdir_make(dst));
	char from[512], to[512], sub[256], subdst[256];
	snprintf(sub, sizeof sub, "%s/journal", src);
	snprintf(subdst, sizeof subdst, "%s/journal", dst);
	assert_int_equal(mkdir(subdst, 0700), 0);
	DIR *d = opendir(sub);
	assert_non_null(d);
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(from, sizeof from, "%s/%s", sub, e->d_name);
		snprintf(to, sizeof to, "%s/%s", subdst, e->d_name);
		int in = open(from, O_RDONLY), out = open(to, O_CREAT | O_WRONLY | O_TRUNC, 0600);
		assert_true(in >= 0 && out >= 0);
		char buf[65536];
		for (ssize_t n; (n = read(in, buf, sizeof buf)) > 0;)
			assert_int_equal(write(out, buf, (size_t)n), n);
		close(in);
		close(out);
	}
	closedir(d);
}

#endif
