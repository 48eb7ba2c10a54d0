/* Decimal text of integers without printf, for hot paths that build replies and headers. */
#ifndef IMAPQ_DECIMAL_H
#define IMAPQ_DECIMAL_H

#include <stddef.h>
#include <stdint.h>

/* Writes v in decimal into buf (room for 21 bytes) with a NUL after it; returns its length. */
size_t decimal_u64(uint64_t v, char *buf);

#endif
