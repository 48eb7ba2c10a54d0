/* The names of IMAP's system flags and their bits in the store's flag mask. */
#ifndef IMAPQ_SERVER_FLAGS_H
#define IMAPQ_SERVER_FLAGS_H

#include <stddef.h>
#include <stdint.h>

/* The bit of the system flag named name[0..len) ("\Seen", any case); 0 when it is not one. */
uint64_t flag_system_bit(const char *name, size_t len);
/* The name of system flag bit i (0 to STORE_KEYWORD_BASE - 1), e.g. "\Seen". */
const char *flag_system_name(unsigned i);

#endif
