/* Growable arrays of any element type, for results collected by callbacks. */
#ifndef IMAPQ_VEC_H
#define IMAPQ_VEC_H

#include <stdbool.h>
#include <stddef.h>

/* Makes room for at least one more element after the n in *items (doubling *cap when full);
 * false (array unchanged) when memory runs out. */
bool vec_grow(void **items, size_t n, size_t *cap, size_t size);

/* Appends one element of size bytes to the array *items of *n elements and room for *cap,
 * doubling the room when full; false (array unchanged) when memory runs out. */
bool vec_push(void **items, size_t *n, size_t *cap, size_t size, const void *item);

#endif
