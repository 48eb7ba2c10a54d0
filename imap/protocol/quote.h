/* Writes strings in IMAP syntax (RFC 3501 section 4): as an atom, a quoted string or a literal,
 * choosing the most compact form that carries the bytes exactly. */
#ifndef IMAPQ_QUOTE_H
#define IMAPQ_QUOTE_H

#include <stdbool.h>
#include <stddef.h>

/* The wire forms of a string. */
enum quote_form {
	QUOTE_ATOM,    /* bare ASTRING-CHARs; never used for "" or anything reading as NIL */
	QUOTE_QUOTED,  /* "..." with '"' and '\' escaped; 7-bit text without CR, LF or NUL */
	QUOTE_LITERAL, /* {N}CRLF followed by the bytes, for everything else */
};

/* The form a string of len bytes needs; QUOTE_ATOM only when allow_atom (astring positions). */
enum quote_form quote_form_for(const char *s, size_t len, bool allow_atom);

/* Writes s[0..len) in the given form into out, at most cap bytes with a NUL when cap > 0, like
 * snprintf; returns the length of the whole encoding. The form must suit the string (see
 * quote_form_for()); a literal carries any bytes. */
size_t quote_write(char *out, size_t cap, const char *s, size_t len, enum quote_form form);

/* Writes an astring: atom when possible, else quoted, else literal. Returns as quote_write(). */
size_t quote_astring(char *out, size_t cap, const char *s, size_t len);
/* Writes a string: quoted when possible, else literal. Returns as quote_write(). */
size_t quote_string(char *out, size_t cap, const char *s, size_t len);
/* Writes an nstring: NIL when s is NULL, else as quote_string(). Returns as quote_write(). */
size_t quote_nstring(char *out, size_t cap, const char *s, size_t len);

#endif
