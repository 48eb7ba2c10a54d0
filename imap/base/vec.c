#include "imap/base/vec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool vec_grow(void **items, size_t n, size_t *cap, size_t size)
{
	if (n < *cap)
		return true;
	size_t ncap = *cap ? *cap * 2 : 16;
	if (ncap > SIZE_MAX / size)
		return false;
	void *p = realloc(*items, ncap * size);
	if (p == NULL)
		return false;
	*items = p;
	*cap = ncap;
	return true;
}

bool vec_push(void **items, size_t *n, size_t *cap, size_t size, const void *item)
{
	if (!vec_grow(items, *n, cap, size))
		return false;
	memcpy((char *)*items + *n * size, item, size);
	(*n)++;
	return true;
}
