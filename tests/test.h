/* Minimal test harness: CHECK* record failures and go on; TEST_MAIN runs the listed tests
 * and prints "N passed, N failed". Exit code 1 when anything failed. */
#ifndef GW_TEST_H
#define GW_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int test_failures_;
static int test_checks_;

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        test_checks_++;                                                                  \
        if (!(cond)) {                                                                   \
            test_failures_++;                                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                               \
    do {                                                                                 \
        long long va_ = (long long)(a), vb_ = (long long)(b);                            \
        test_checks_++;                                                                  \
        if (va_ != vb_) {                                                                \
            test_failures_++;                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                   \
        }                                                                                \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                            \
    do {                                                                                 \
        double va_ = (double)(a), vb_ = (double)(b);                                     \
        test_checks_++;                                                                  \
        if (!(fabs(va_ - vb_) <= (tol))) {                                               \
            test_failures_++;                                                            \
            fprintf(stderr, "%s:%d: %s ~= %s failed: %.9g vs %.9g (tol %g)\n", __FILE__, \
                    __LINE__, #a, #b, va_, vb_, (double)(tol));                          \
        }                                                                                \
    } while (0)

#define CHECK_STR(a, b)                                                                  \
    do {                                                                                 \
        const char *sa_ = (a), *sb_ = (b);                                               \
        test_checks_++;                                                                  \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                     \
            test_failures_++;                                                            \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,       \
                    __LINE__, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");       \
        }                                                                                \
    } while (0)

#define CHECK_MEM(a, b, n)                                                               \
    do {                                                                                 \
        test_checks_++;                                                                  \
        if (memcmp((a), (b), (n)) != 0) {                                                \
            test_failures_++;                                                            \
            fprintf(stderr, "%s:%d: memory %s != %s (%zu bytes)\n", __FILE__, __LINE__,  \
                    #a, #b, (size_t)(n));                                                \
        }                                                                                \
    } while (0)

typedef void (*test_fn_)(void);
struct test_case_ {
    const char *name;
    test_fn_ fn;
};
#define TEST_CASE(fn) { #fn, fn }

static inline int test_run_(const struct test_case_ *cases, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int before = test_failures_;
        cases[i].fn();
        if (test_failures_ == before) {
            passed++;
            printf("ok   %s\n", cases[i].name);
        } else {
            failed++;
            printf("FAIL %s\n", cases[i].name);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                                   \
    int main(void)                                                                       \
    {                                                                                    \
        static const struct test_case_ cases_[] = { __VA_ARGS__ };                       \
        return test_run_(cases_, sizeof cases_ / sizeof cases_[0]);                      \
    }

#endif
