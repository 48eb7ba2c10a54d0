/* CRC-32C (Castagnoli), the checksum of every journal record. */
#ifndef IMAPQ_CRC32C_H
#define IMAPQ_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over len bytes of buf; uses SSE4.2 when the CPU has it. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable table-driven implementation, whatever the CPU (tests compare it with crc32c). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* True when crc32c() uses the CPU's SSE4.2 instruction. */
bool crc32c_hw_available(void);

#endif
