/* Fibers and their stacks: switching and callee-saved state, 100,000 live
 * fibers within the kernel's mapping limit, stack reuse and the hot limit,
 * the guard-page budget, overflow reports (guard page and canary), the fault
 * handler's chaining, and running out of address space. Tests that expect a
 * crash run in a forked child and read its stderr through a pipe. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fiber.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND              0
#define VALGRIND_DISABLE_ERROR_REPORTING ((void)0)
#endif

#define OVERFLOW_MSG "stack overflow in task 'deep-recursion' (stack 65536 bytes"

static size_t page_size(void) {
    return (size_t)sysconf(_SC_PAGESIZE);
}

static sp_stack_pool *pool_new(size_t stack_size) {
    sp_stack_pool *pool = NULL;
    assert_int_equal(sp_stack_pool_create(&pool, stack_size), 0);
    return pool;
}

static struct sp_stack_pool_stats pool_stats(const sp_stack_pool *pool) {
    struct sp_stack_pool_stats st;
    sp_stack_pool_stats(pool, &st);
    return st;
}

/* ---- Switching ---- */

typedef struct pingpong {
    sp_fiber main, fib;
    long value;
    int rounds;
    uintptr_t frame; /* the entry's frame address, for the alignment check */
} pingpong;

static void pingpong_entry(void *arg) {
    pingpong *p = arg;
    p->frame = (uintptr_t)__builtin_frame_address(0);
    for (int i = 0; i < p->rounds; i++) {
        p->value = p->value * 2 + 1;
        sp_fiber_switch(&p->fib, &p->main);
    }
    p->value = -1;
    sp_fiber_exit(&p->fib, &p->main);
}

static void test_switch_passes_values_back_and_forth(void **state) {
    (void)state;
    sp_stack_pool *pool = pool_new(64 * 1024);
    pingpong p = {.rounds = 1000};
    sp_fiber_init_main(&p.main);
    assert_int_equal(sp_fiber_create(&p.fib, pool, pingpong_entry, &p), 0);
    p.fib.label = "pingpong";
    for (long i = 0; i < p.rounds; i++) {
        p.value = i;
        sp_fiber_switch(&p.main, &p.fib);
        assert_int_equal(p.value, i * 2 + 1);
    }
    sp_fiber_switch(&p.main, &p.fib);
    assert_int_equal(p.value, -1);
    sp_fiber_release(&p.fib, pool);
    sp_stack_pool_destroy(pool);
}

static void test_fiber_entry_runs_on_16_byte_aligned_stack(void **state) {
    (void)state;
    sp_stack_pool *pool = pool_new(64 * 1024);
    pingpong p = {.rounds = 0};
    sp_fiber_init_main(&p.main);
    assert_int_equal(sp_fiber_create(&p.fib, pool, pingpong_entry, &p), 0);
    sp_fiber_switch(&p.main, &p.fib);
    /* The frame record sits at a 16-byte boundary only if the ABI's stack
     * alignment held at the call into the entry. */
    assert_int_equal(p.frame % 16, 0);
    assert_true(p.frame > (uintptr_t)p.fib.stack_lo);
    assert_true(p.frame < (uintptr_t)p.fib.stack_lo + p.fib.stack_size);
    sp_fiber_release(&p.fib, pool);
    sp_stack_pool_destroy(pool);
}

typedef struct deep_ctx {
    sp_fiber main, fib;
    bool switching;
    long result;
} deep_ctx;

static deep_ctx *g_deep;

/* Keeps many values live in callee-saved registers (integer and, on AArch64,
 * d8-d15) across switches at every level of recursion. */
__attribute__((noinline)) static long deep(int depth) {
    long a = depth * 3 + 1, b = a * 7, c = b ^ 0x55, d = c + a, e = d * 13, f = e - b;
    long g = f ^ c, h = g + d, i = h * 5 - a, j = i ^ e;
    double x = depth * 1.5, y = x * x + 0.25, z = y / 3.0, w = x + y + z;
    if (g_deep->switching)
        sp_fiber_switch(&g_deep->fib, &g_deep->main);
    long sub = depth ? deep(depth - 1) : 0;
    if (g_deep->switching)
        sp_fiber_switch(&g_deep->fib, &g_deep->main);
    return a + b + c + d + e + f + g + h + i + j + (long)(x + y + z + w) + sub;
}

static void deep_entry(void *arg) {
    deep_ctx *ctx = arg;
    ctx->result = deep(40);
    sp_fiber_exit(&ctx->fib, &ctx->main);
}

static void test_callee_saved_state_survives_switches(void **state) {
    (void)state;
    deep_ctx ctx = {.switching = false};
    g_deep = &ctx;
    long expected = deep(40);

    sp_stack_pool *pool = pool_new(64 * 1024);
    ctx.switching = true;
    sp_fiber_init_main(&ctx.main);
    assert_int_equal(sp_fiber_create(&ctx.fib, pool, deep_entry, &ctx), 0);
    /* The main side keeps its own live values across the same switches. */
    long m1 = 11, m2 = 22, m3 = 33, m4 = 44, m5 = 55, m6 = 66;
    double d1 = 1.25, d2 = 2.5;
    int switches = 0;
    while (ctx.result == 0) {
        sp_fiber_switch(&ctx.main, &ctx.fib);
        m1 += 1, m2 += 2, m3 += 3, m4 += 4, m5 += 5, m6 += 6;
        d1 += 0.5, d2 -= 0.25;
        switches++;
    }
    assert_int_equal(switches, 2 * 41 + 1);
    assert_int_equal(ctx.result, expected);
    assert_int_equal(m1, 11 + switches);
    assert_int_equal(m2, 22 + 2 * switches);
    assert_int_equal(m3, 33 + 3 * switches);
    assert_int_equal(m4, 44 + 4 * switches);
    assert_int_equal(m5, 55 + 5 * switches);
    assert_int_equal(m6, 66 + 6 * switches);
    assert_true(d1 == 1.25 + 0.5 * switches && d2 == 2.5 - 0.25 * switches);
    sp_fiber_release(&ctx.fib, pool);
    sp_stack_pool_destroy(pool);
}

typedef struct heavy_ctx {
    sp_fiber main, fib;
    long sum;
} heavy_ctx;

static void heavy_entry(void *arg) {
    heavy_ctx *ctx = arg;
    volatile char buf[48 * 1024];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(i % 251);
    for (size_t i = 0; i < sizeof(buf); i += 509)
        ctx->sum += buf[i];
    sp_fiber_exit(&ctx->fib, &ctx->main);
}

static void test_fiber_may_use_most_of_its_stack(void **state) {
    (void)state;
    sp_stack_pool *pool = pool_new(64 * 1024);
    heavy_ctx ctx = {.sum = 0};
    sp_fiber_init_main(&ctx.main);
    assert_int_equal(sp_fiber_create(&ctx.fib, pool, heavy_entry, &ctx), 0);
    sp_fiber_switch(&ctx.main, &ctx.fib);
    assert_int_not_equal(ctx.sum, 0);
    sp_fiber_release(&ctx.fib, pool); /* canary intact: no abort */
    sp_stack_pool_destroy(pool);
}

/* ---- Many fibers, reuse, the hot limit ---- */

typedef struct parked {
    sp_fiber f;
    sp_fiber *main;
    int stage;
} parked;

static void parked_entry(void *arg) {
    parked *p = arg;
    p->stage = 1;
    sp_fiber_switch(&p->f, p->main);
    p->stage = 2;
    sp_fiber_exit(&p->f, p->main);
}

static long count_maps(void) {
    FILE *fp = fopen("/proc/self/maps", "r");
    assert_non_null(fp);
    long lines = 0;
    int c;
    while ((c = fgetc(fp)) != EOF)
        lines += c == '\n';
    fclose(fp);
    return lines;
}

static void test_100k_fibers_alive_at_once_stay_within_mapping_limit(void **state) {
    (void)state;
    size_t n = 100000;
    const char *env = getenv("SP_TEST_FIBERS"); /* 1000000 for the full-scale run */
    if (env)
        n = strtoul(env, NULL, 10);
    if (RUNNING_ON_VALGRIND)
        n = 2000; /* valgrind looks stacks up linearly on every switch */
    sp_fiber_set_guard_budget(1000);
    sp_stack_pool *pool = pool_new(SP_FIBER_STACK_MIN);
    parked *ps = calloc(n, sizeof(*ps));
    assert_non_null(ps);
    sp_fiber main_f;
    sp_fiber_init_main(&main_f);

    for (size_t i = 0; i < n; i++) {
        ps[i].main = &main_f;
        assert_int_equal(sp_fiber_create(&ps[i].f, pool, parked_entry, &ps[i]), 0);
        ps[i].f.label = "parked";
        sp_fiber_switch(&main_f, &ps[i].f);
        assert_int_equal(ps[i].stage, 1);
    }
    struct sp_stack_pool_stats st = pool_stats(pool);
    long maps = count_maps();
    print_message("%zu fibers parked: %zu chunks, %zu guarded, %zu unguarded, %ld mappings\n", n,
                  st.chunks, st.guarded, st.unguarded, maps);
    assert_true(maps < 10000);
    assert_true(st.total >= n);
    assert_int_equal(st.guarded, 1000);
    assert_int_equal(st.unguarded, st.total - 1000);

    for (size_t i = 0; i < n; i++) {
        sp_fiber_switch(&main_f, &ps[i].f);
        assert_int_equal(ps[i].stage, 2);
        sp_fiber_release(&ps[i].f, pool);
    }
    st = pool_stats(pool);
    assert_int_equal(st.free, st.total);
    assert_int_equal(st.hot, n < SP_FIBER_HOT_STACKS ? n : SP_FIBER_HOT_STACKS);
    free(ps);
    sp_stack_pool_destroy(pool);
}

static void test_released_stacks_are_reused(void **state) {
    (void)state;
    sp_stack_pool *pool = pool_new(32 * 1024);
    sp_fiber main_f;
    sp_fiber_init_main(&main_f);
    parked p = {.main = &main_f};
    for (int i = 0; i < 10000; i++) {
        assert_int_equal(sp_fiber_create(&p.f, pool, parked_entry, &p), 0);
        sp_fiber_switch(&main_f, &p.f);
        sp_fiber_switch(&main_f, &p.f);
        assert_int_equal(p.stage, 2);
        sp_fiber_release(&p.f, pool);
    }
    struct sp_stack_pool_stats st = pool_stats(pool);
    assert_int_equal(st.chunks, 1);
    assert_int_equal(st.total, 16);
    assert_int_equal(st.free, 16);
    sp_stack_pool_destroy(pool);
}

typedef struct toucher {
    sp_fiber f;
    sp_fiber *main;
} toucher;

static void toucher_entry(void *arg) {
    toucher *t = arg;
    volatile char buf[32 * 1024];
    for (size_t i = 0; i < sizeof(buf); i += 256)
        buf[i] = 1;
    sp_fiber_exit(&t->f, t->main);
}

static size_t resident_pages(const char *lo, size_t len) {
    size_t pages = len / page_size(), n = 0;
    unsigned char *vec = malloc(pages);
    assert_non_null(vec);
    assert_int_equal(mincore((void *)lo, len, vec), 0);
    for (size_t i = 0; i < pages; i++)
        n += vec[i] & 1;
    free(vec);
    return n;
}

static void test_stacks_freed_beyond_hot_limit_give_memory_back(void **state) {
    (void)state;
    enum { N = 12, HOT = 4 };
    sp_stack_pool *pool = pool_new(64 * 1024);
    sp_stack_pool_set_hot_max(pool, HOT);
    sp_fiber main_f;
    sp_fiber_init_main(&main_f);
    toucher ts[N];
    char *lo[N];
    for (int i = 0; i < N; i++) {
        ts[i].main = &main_f;
        assert_int_equal(sp_fiber_create(&ts[i].f, pool, toucher_entry, &ts[i]), 0);
        lo[i] = ts[i].f.stack_lo;
        sp_fiber_switch(&main_f, &ts[i].f);
    }
    for (int i = 0; i < N; i++)
        assert_true(resident_pages(lo[i], 64 * 1024) >= 8);
    for (int i = 0; i < N; i++)
        sp_fiber_release(&ts[i].f, pool);
    struct sp_stack_pool_stats st = pool_stats(pool);
    assert_int_equal(st.free, st.total);
    assert_int_equal(st.hot, HOT);
    for (int i = 0; i < N; i++) {
        if (i < HOT)
            assert_true(resident_pages(lo[i], 64 * 1024) >= 8);
        else
            assert_int_equal(resident_pages(lo[i], 64 * 1024), 0);
    }
    /* Lowering the limit gives back the stacks above it at once. */
    sp_stack_pool_set_hot_max(pool, 0);
    assert_int_equal(pool_stats(pool).hot, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(resident_pages(lo[i], 64 * 1024), 0);
    sp_stack_pool_destroy(pool);
}

/* ---- Pools and the guard budget ---- */

static void test_pool_rejects_stacks_below_16k_and_rounds_to_pages(void **state) {
    (void)state;
    sp_stack_pool *pool = NULL;
    assert_int_equal(sp_stack_pool_create(&pool, 8 * 1024), -EINVAL);
    assert_int_equal(sp_stack_pool_create(&pool, SP_FIBER_STACK_MIN - 1), -EINVAL);
    pool = pool_new(SP_FIBER_STACK_MIN + 1);
    struct sp_stack_pool_stats st = pool_stats(pool);
    assert_int_equal(st.stack_size, SP_FIBER_STACK_MIN + page_size());
    assert_int_equal(st.total, 0); /* nothing mapped before the first fiber */
    assert_int_equal(st.chunks, 0);
    sp_stack_pool_destroy(pool);
}

static void test_guard_budget_is_shared_by_pools_and_returned_on_destroy(void **state) {
    (void)state;
    sp_fiber_set_guard_budget(20);
    sp_stack_pool *a = pool_new(32 * 1024), *b = pool_new(32 * 1024);
    sp_fiber fa[16], fb[17];
    for (int i = 0; i < 16; i++)
        assert_int_equal(sp_fiber_create(&fa[i], a, parked_entry, NULL), 0);
    assert_int_equal(pool_stats(a).guarded, 16);
    assert_true(fa[0].guarded);

    assert_int_equal(sp_fiber_create(&fb[0], b, parked_entry, NULL), 0);
    struct sp_stack_pool_stats st = pool_stats(b);
    assert_int_equal(st.guarded, 4); /* what a's chunk left of the 20 */
    assert_int_equal(st.unguarded, 12);

    for (int i = 0; i < 16; i++)
        sp_fiber_release(&fa[i], a);
    sp_stack_pool_destroy(a);

    /* b's second chunk (32 stacks) gets the 16 guards a gave back. */
    for (int i = 1; i < 17; i++)
        assert_int_equal(sp_fiber_create(&fb[i], b, parked_entry, NULL), 0);
    st = pool_stats(b);
    assert_int_equal(st.chunks, 2);
    assert_int_equal(st.total, 48);
    assert_int_equal(st.guarded, 20);
    assert_int_equal(st.unguarded, 28);
    for (int i = 0; i < 17; i++)
        sp_fiber_release(&fb[i], b);
    sp_stack_pool_destroy(b);
}

/* ---- Threads ---- */

typedef struct thread_ctx {
    pingpong p;
    long sum;
    int err;
} thread_ctx;

static void *thread_main(void *arg) {
    thread_ctx *t = arg;
    sp_stack_pool *pool;
    if ((t->err = sp_stack_pool_create(&pool, 32 * 1024)) != 0)
        return NULL;
    sp_fiber_init_main(&t->p.main);
    t->p.rounds = 20000;
    if ((t->err = sp_fiber_create(&t->p.fib, pool, pingpong_entry, &t->p)) != 0)
        return NULL;
    for (long i = 0; i < t->p.rounds; i++) {
        t->p.value = i;
        sp_fiber_switch(&t->p.main, &t->p.fib);
        t->sum += t->p.value;
    }
    sp_fiber_switch(&t->p.main, &t->p.fib);
    sp_fiber_release(&t->p.fib, pool);
    sp_stack_pool_destroy(pool);
    return NULL;
}

static void test_fibers_on_two_threads_run_independently(void **state) {
    (void)state;
    thread_ctx t[2];
    memset(t, 0, sizeof(t));
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &t[i]), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].err, 0);
        long n = t[i].p.rounds;
        assert_int_equal(t[i].sum, n * (n - 1) + n); /* sum of 2i+1 */
    }
}

/* ---- Crashes, in forked children ---- */

typedef struct child_result {
    int status;
    char out[16384]; /* the child's stderr */
} child_result;

/* Runs fn in a child whose stderr goes to r->out. fn reports failure by
 * exiting non-zero (never with cmocka asserts, which would longjmp into the
 * child's copy of the test runner). */
static void run_child(void (*fn)(void), child_result *r) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* cmocka's handlers would turn a crash into a test failure and run
         * the remaining tests in the child. */
        const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGABRT};
        for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
            signal(sigs[i], SIG_DFL);
        close(p[0]);
        dup2(p[1], STDERR_FILENO);
        alarm(60); /* a hang fails the test instead of stalling the suite */
        fn();
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    ssize_t k;
    char sink[4096];
    while ((k = read(p[0], r->out + n, sizeof(r->out) - 1 - n)) > 0)
        n += (size_t)k;
    while (read(p[0], sink, sizeof(sink)) > 0)
        ;
    r->out[n] = '\0';
    close(p[0]);
    assert_int_equal(waitpid(pid, &r->status, 0), pid);
}

static void print_child(const char *what, const child_result *r) {
    if (WIFSIGNALED(r->status))
        print_message("%s: child killed by signal %d\n", what, WTERMSIG(r->status));
    else
        print_message("%s: child exited %d\n", what, WEXITSTATUS(r->status));
    if (r->out[0])
        print_message("%s: child stderr:\n%.2000s\n", what, r->out);
}

/* The child died of sig with our message; under ASan its own stack-overflow
 * report (and its exit) is accepted too. */
static void assert_child_died_of_overflow(const child_result *r, int sig) {
    print_child("overflow", r);
    bool ours = strstr(r->out, OVERFLOW_MSG) && strstr(r->out, "raise the stack size");
#ifdef SP_FIBER_ASAN
    bool died = WIFSIGNALED(r->status) || (WIFEXITED(r->status) && WEXITSTATUS(r->status) != 0);
    assert_true(died);
    assert_true(ours || strstr(r->out, "stack-overflow"));
    (void)sig;
#else
    assert_true(WIFSIGNALED(r->status));
    assert_int_equal(WTERMSIG(r->status), sig);
    assert_true(ours);
#endif
}

static volatile int g_never = -1;

__attribute__((noinline)) static int recurse_forever(int depth) {
    volatile char buf[256];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)depth;
    if (depth == g_never)
        return 0;
    int sub = recurse_forever(depth + 1);
    __asm__ volatile("" : "+r"(sub));
    return sub + buf[depth % 256];
}

static sp_fiber g_child_main, g_child_fib;

static void recurse_entry(void *arg) {
    (void)arg;
    recurse_forever(0);
    sp_fiber_exit(&g_child_fib, &g_child_main);
}

static void child_guarded_overflow(void) {
    sp_fiber_set_guard_budget(1000);
    sp_stack_pool *pool;
    if (sp_fiber_thread_init() != 0 || sp_stack_pool_create(&pool, 64 * 1024) != 0)
        _exit(90);
    sp_fiber_init_main(&g_child_main);
    if (sp_fiber_create(&g_child_fib, pool, recurse_entry, NULL) != 0)
        _exit(91);
    g_child_fib.label = "deep-recursion";
    if (!g_child_fib.guarded)
        _exit(92);
    sp_fiber_switch(&g_child_main, &g_child_fib);
    _exit(93);
}

static void test_guard_page_overflow_dies_with_sigsegv_naming_the_task(void **state) {
    (void)state;
    child_result r;
    run_child(child_guarded_overflow, &r);
    assert_child_died_of_overflow(&r, SIGSEGV);
}

/* Recurses until its frames lie 1 KiB into the gap page below the stack,
 * then suspends: the switch finds the canary overwritten. Only scalar locals,
 * so every frame is written through (an array's ASan redzones are not). */
__attribute__((noinline)) static long overflow_into_gap(long depth) {
    long a = depth * 3, b = a ^ 0x5a5a, c = b + depth, d = c * 7, e = d - a, f = e ^ b;
    long sub = 0;
    if ((uintptr_t)__builtin_frame_address(0) > (uintptr_t)g_child_fib.stack_lo - 1024)
        sub = overflow_into_gap(depth + 1);
    else
        sp_fiber_switch(&g_child_fib, &g_child_main);
    __asm__ volatile("" : "+r"(sub)); /* no tail-recursion elimination: keep the frames */
    return a + b + c + d + e + f + sub;
}

static void gap_entry(void *arg) {
    (void)arg;
    overflow_into_gap(0);
    sp_fiber_exit(&g_child_fib, &g_child_main);
}

static void child_unguarded_overflow(void) {
    sp_fiber_set_guard_budget(0);
    sp_stack_pool *pool;
    if (sp_fiber_thread_init() != 0 || sp_stack_pool_create(&pool, 64 * 1024) != 0)
        _exit(90);
    sp_fiber_init_main(&g_child_main);
    if (sp_fiber_create(&g_child_fib, pool, gap_entry, NULL) != 0)
        _exit(91);
    g_child_fib.label = "deep-recursion";
    if (g_child_fib.guarded)
        _exit(92);
    sp_fiber_switch(&g_child_main, &g_child_fib);
    /* The switch back checks one canary word; releasing checks them all. */
    sp_fiber_release(&g_child_fib, pool);
    _exit(93);
}

static void test_unguarded_overflow_is_caught_by_canary_and_aborts(void **state) {
    (void)state;
    child_result r;
    run_child(child_unguarded_overflow, &r);
    assert_child_died_of_overflow(&r, SIGABRT);
    if (strstr(r.out, OVERFLOW_MSG))
        assert_non_null(strstr(r.out, "canary overwritten"));
}

static void exit_42(int sig, siginfo_t *si, void *uctx) {
    (void)sig, (void)si, (void)uctx;
    _exit(42);
}

static char *g_bad_page;

static void bad_write_entry(void *arg) {
    (void)arg;
    VALGRIND_DISABLE_ERROR_REPORTING; /* the bad write is the point */
    *(volatile char *)g_bad_page = 1;
    sp_fiber_exit(&g_child_fib, &g_child_main);
}

static void child_fault_elsewhere(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = exit_42;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0)
        _exit(89);
    /* Installed after the handler above, so the fiber one sees faults first. */
    sp_stack_pool *pool;
    if (sp_fiber_thread_init() != 0 || sp_stack_pool_create(&pool, 64 * 1024) != 0)
        _exit(90);
    g_bad_page = mmap(NULL, page_size(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g_bad_page == MAP_FAILED)
        _exit(91);
    sp_fiber_init_main(&g_child_main);
    if (sp_fiber_create(&g_child_fib, pool, bad_write_entry, NULL) != 0)
        _exit(92);
    sp_fiber_switch(&g_child_main, &g_child_fib);
    _exit(93);
}

static void test_fault_outside_stack_guards_goes_to_previous_handler(void **state) {
    (void)state;
    child_result r;
    run_child(child_fault_elsewhere, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 42)
        print_child("fault elsewhere", &r);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 42);
    assert_null(strstr(r.out, "stack overflow"));
}

static void child_altstack(void) {
    /* Start without one (ASan gives every thread its own). */
    stack_t off = {.ss_flags = SS_DISABLE}, cur;
    if (sigaltstack(&off, NULL) != 0)
        _exit(80);
    if (sp_fiber_thread_init() != 0 || sigaltstack(NULL, &cur) != 0)
        _exit(81);
    if ((cur.ss_flags & SS_DISABLE) || cur.ss_size < 16 * 1024)
        _exit(82);
    if (sp_fiber_thread_init() != 0)
        _exit(83); /* idempotent */
    sp_fiber_thread_fini();
    if (sigaltstack(NULL, &cur) != 0 || !(cur.ss_flags & SS_DISABLE))
        _exit(84);

    /* A signal stack the thread already has is kept. */
    static char mine[64 * 1024];
    stack_t ss = {.ss_sp = mine, .ss_size = sizeof(mine), .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        _exit(85);
    if (sp_fiber_thread_init() != 0 || sigaltstack(NULL, &cur) != 0 || cur.ss_sp != mine)
        _exit(86);
    sp_fiber_thread_fini();
    if (sigaltstack(NULL, &cur) != 0 || cur.ss_sp != mine || (cur.ss_flags & SS_DISABLE))
        _exit(87);
}

static void test_thread_init_gives_a_signal_stack_and_fini_removes_it(void **state) {
    (void)state;
    child_result r;
    run_child(child_altstack, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        print_child("altstack", &r);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 0);
}

/* ---- Running out of memory ---- */

/* Caps the address space at what the process maps now plus extra bytes. */
static int limit_address_space(size_t extra) {
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long pages;
    if (!fp || fscanf(fp, "%lu", &pages) != 1)
        return -1;
    fclose(fp);
    struct rlimit rl = {.rlim_cur = pages * page_size() + extra,
                        .rlim_max = pages * page_size() + extra};
    return setrlimit(RLIMIT_AS, &rl);
}

static void child_absurd_stack(void) {
    sp_stack_pool *pool;
    if (sp_stack_pool_create(&pool, (size_t)1 << 46) != 0)
        _exit(80);
    if (limit_address_space(256u << 20) != 0)
        _exit(81);
    sp_fiber f;
    int rc = sp_fiber_create(&f, pool, parked_entry, NULL);
    if (rc != -ENOMEM)
        _exit(82);
    struct sp_stack_pool_stats st;
    sp_stack_pool_stats(pool, &st);
    if (st.total != 0 || st.chunks != 0)
        _exit(83);
    sp_stack_pool_destroy(pool);
}

static void test_absurd_stack_size_fails_with_enomem_not_a_crash(void **state) {
    (void)state;
    child_result r;
    run_child(child_absurd_stack, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        print_child("absurd stack", &r);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 0);
}

static void child_exhaust(void) {
    enum { MAX = 4096 };
    static sp_fiber fs[MAX];
    sp_stack_pool *pool;
    if (sp_stack_pool_create(&pool, 64 * 1024) != 0)
        _exit(80);
    if (limit_address_space(32u << 20) != 0)
        _exit(81);
    int n = 0, rc = 0;
    while (n < MAX && (rc = sp_fiber_create(&fs[n], pool, parked_entry, NULL)) == 0)
        n++;
    if (rc != -ENOMEM || n == 0 || n == MAX)
        _exit(82);
    /* A stack given back serves the next fiber. */
    sp_fiber_release(&fs[n - 1], pool);
    if (sp_fiber_create(&fs[n - 1], pool, parked_entry, NULL) != 0)
        _exit(83);
    for (int i = 0; i < n; i++)
        sp_fiber_release(&fs[i], pool);
    sp_stack_pool_destroy(pool);
}

static void test_fiber_create_returns_enomem_when_address_space_runs_out(void **state) {
    (void)state;
    if (RUNNING_ON_VALGRIND)
        skip(); /* valgrind's own allocator shares the capped address space and dies first */
    child_result r;
    run_child(child_exhaust, &r);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0)
        print_child("exhaust", &r);
    assert_true(WIFEXITED(r.status));
    assert_int_equal(WEXITSTATUS(r.status), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switch_passes_values_back_and_forth),
        cmocka_unit_test(test_fiber_entry_runs_on_16_byte_aligned_stack),
        cmocka_unit_test(test_callee_saved_state_survives_switches),
        cmocka_unit_test(test_fiber_may_use_most_of_its_stack),
        cmocka_unit_test(test_100k_fibers_alive_at_once_stay_within_mapping_limit),
        cmocka_unit_test(test_released_stacks_are_reused),
        cmocka_unit_test(test_stacks_freed_beyond_hot_limit_give_memory_back),
        cmocka_unit_test(test_pool_rejects_stacks_below_16k_and_rounds_to_pages),
        cmocka_unit_test(test_guard_budget_is_shared_by_pools_and_returned_on_destroy),
        cmocka_unit_test(test_fibers_on_two_threads_run_independently),
        cmocka_unit_test(test_guard_page_overflow_dies_with_sigsegv_naming_the_task),
        cmocka_unit_test(test_unguarded_overflow_is_caught_by_canary_and_aborts),
        cmocka_unit_test(test_fault_outside_stack_guards_goes_to_previous_handler),
        cmocka_unit_test(test_thread_init_gives_a_signal_stack_and_fini_removes_it),
        cmocka_unit_test(test_absurd_stack_size_fails_with_enomem_not_a_crash),
        cmocka_unit_test(test_fiber_create_returns_enomem_when_address_space_runs_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
