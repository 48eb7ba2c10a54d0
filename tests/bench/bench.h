/* Helpers shared by the benchmarks under tests/bench: clocks, percentiles, a scratch data folder
 * and the output format. Header-only, because every tests/bench/bench_*.c is its own program.
 *
 * Output contract: a benchmark prints a readable table to stdout and, for each headline figure,
 * one line exactly "bench: <name> <value> <unit>" (see bench_figure()), so scripts can compare
 * runs. Benchmarks measure and print; they never assert timings. */
#ifndef IMAPQ_BENCH_H
#define IMAPQ_BENCH_H

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Nanoseconds on the monotonic clock. */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Seconds elapsed since start_ns (a bench_now_ns() reading). */
static inline double bench_since_s(uint64_t start_ns)
{
	return (double)(bench_now_ns() - start_ns) / 1e9;
}

/* Comparison for qsort() over doubles, ascending. */
static inline int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* The p-th percentile (0..100) of n values, interpolating linearly between neighbours. Sorts
 * values in place. Returns 0 when n is 0. */
static inline double bench_percentile(double *values, size_t n, double p)
{
	double rank, frac;
	size_t lo;

	if (n == 0)
		return 0;
	qsort(values, n, sizeof(*values), bench_cmp_double);
	if (p <= 0)
		return values[0];
	if (p >= 100)
		return values[n - 1];
	rank = p / 100.0 * (double)(n - 1);
	lo = (size_t)rank;
	frac = rank - (double)lo;
	if (lo + 1 >= n)
		return values[n - 1];
	return values[lo] + (values[lo + 1] - values[lo]) * frac;
}

/* The median of n values; sorts values in place. */
static inline double bench_median(double *values, size_t n)
{
	return bench_percentile(values, n, 50);
}

/* Prints a section title of the table. */
static inline void bench_section(const char *title)
{
	printf("\n%s\n", title);
	fflush(stdout);
}

/* Prints one table row: a label, a value with the given decimals, its unit and a note. */
static inline void bench_row(const char *label, double value, int decimals, const char *unit,
			     const char *note)
{
	printf("  %-44s %14.*f %-8s %s\n", label, decimals, value, unit, note ? note : "");
	fflush(stdout);
}

/* Prints a headline figure as the machine-readable line "bench: <name> <value> <unit>". */
static inline void bench_figure(const char *name, double value, int decimals, const char *unit)
{
	printf("bench: %s %.*f %s\n", name, decimals, value, unit);
	fflush(stdout);
}

/* Reports a functional failure on stderr; the benchmark then exits non-zero. */
__attribute__((format(printf, 1, 2))) static inline void bench_fail(const char *fmt, ...)
{
	va_list ap;

	fputs("bench: FAILED: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Creates a fresh scratch folder inside $IMAPQ_BENCH_DIR, or inside /tmp when that is unset,
 * and copies its path into buf. Returns 0, or -1 with errno set. */
static inline int bench_dir_create(char *buf, size_t cap)
{
	const char *parent = getenv("IMAPQ_BENCH_DIR");
	int n;

	if (!parent || !*parent)
		parent = "/tmp";
	n = snprintf(buf, cap, "%s/imapq-bench-XXXXXX", parent);
	if (n < 0 || (size_t)n >= cap) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return mkdtemp(buf) ? 0 : -1;
}

/* Removes one entry for bench_dir_remove(); nftw visits children before their folder. */
static inline int bench_dir_remove_entry(const char *path, const struct stat *st, int type,
					 struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes a scratch folder and everything in it. Returns 0, or -1 with errno set. */
static inline int bench_dir_remove(const char *path)
{
	return nftw(path, bench_dir_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
