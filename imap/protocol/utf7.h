/* Modified UTF-7 of IMAP mailbox names (RFC 3501 section 5.1.3): printable US-ASCII stands for
 * itself ("&" as "&-"), everything else is UTF-16 in a BASE64 variant between "&" and "-". */
#ifndef IMAPQ_UTF7_H
#define IMAPQ_UTF7_H

#include "imap/base/error.h"

#include <stddef.h>

/* Decodes in[0..len) to UTF-8 in a new NUL-terminated string that the caller frees. Refuses
 * (IMAPQ_E_INVALID) bytes outside printable US-ASCII, a shift that is empty, unterminated, ends
 * with non-zero padding or a lone surrogate, encodes a printable US-ASCII character or NUL, or
 * directly follows another shift: exactly the forms utf7_encode() would never produce. Returns
 * IMAPQ_OK, IMAPQ_E_INVALID or IMAPQ_E_NOMEM; *out_r is NULL unless IMAPQ_OK. */
imapq_err utf7_decode(const char *in, size_t len, char **out_r);

/* Encodes the UTF-8 text in[0..len) to modified UTF-7 in a new NUL-terminated string that the
 * caller frees. Refuses (IMAPQ_E_INVALID) malformed UTF-8: overlong forms, surrogates, code points
 * above U+10FFFF, truncated sequences and NUL. Returns IMAPQ_OK, IMAPQ_E_INVALID or
 * IMAPQ_E_NOMEM; *out_r is NULL unless IMAPQ_OK. */
imapq_err utf7_encode(const char *in, size_t len, char **out_r);

#endif
