#include "cmd/daemon/portfile.h"

#include <limits.h>
#include <stdio.h>
#include <unistd.h>

imapq_err portfile_write(const char *path, const struct portfile_entry *entries, size_t n)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return IMAPQ_E_INVALID;
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		return IMAPQ_E_IO;
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s=%u\n", entries[i].name, entries[i].port);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		unlink(tmp);
		return IMAPQ_E_IO;
	}
	return IMAPQ_OK;
}
