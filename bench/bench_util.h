/* Helpers shared by the benchmarks: a monotonic clock and order statistics. Benchmarks print
 * figures (median of several runs); they never fail on a figure. */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline double bench_now_us(void) { return bench_now_s() * 1e6; }

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) in place and returns its median (n > 0). */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], bench_cmp_double);
    return v[n / 2];
}

/* Quantile q (0..1: 0.5 median, 0.99 p99) of v[0..n), sorting v in place (n > 0). */
static inline double bench_quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof v[0], bench_cmp_double);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

#endif
