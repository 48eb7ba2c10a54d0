#include "imap/server/flags.h"

#include <string.h>
#include <strings.h>

#include "imap/store/store.h"

/* Indexed by bit number: STORE_SEEN is bit 0, and so on. */
static const char *const system_flags[STORE_KEYWORD_BASE] = {"\\Seen", "\\Answered", "\\Flagged",
							     "\\Deleted", "\\Draft"};

uint64_t flag_system_bit(const char *name, size_t len)
{
	for (unsigned i = 0; i < STORE_KEYWORD_BASE; i++) {
		if (strlen(system_flags[i]) == len && strncasecmp(system_flags[i], name, len) == 0)
			return 1ull << i;
	}
	return 0;
}

const char *flag_system_name(unsigned i)
{
	return i < STORE_KEYWORD_BASE ? system_flags[i] : "";
}
