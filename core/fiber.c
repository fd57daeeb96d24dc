/* Fiber stacks and the switch around the assembly routine: stack pooling,
 * guard pages and canaries, the overflow handler, and the AddressSanitizer /
 * valgrind annotations that let both tools follow a program across fibers.
 *
 * Why guard pages have a budget. A PROT_NONE page below each stack is the
 * surest overflow check, but each one splits a mapping in two, and the kernel
 * caps a process at vm.max_map_count mappings (65530 by default): one guard
 * per stack stops near 32,750 fibers (libdill, state-threads). So stacks are
 * carved from big MAP_NORESERVE chunks (16, 32, ... 1024 stacks, one mapping
 * each), and a process-wide atomic budget of guard pages, max_map_count / 4
 * by default (their mappings then take at most half the limit), decides which
 * stacks get one. Past the budget, a stack keeps an unused, writable gap page
 * below it instead and relies on its canary alone: a million fibers cost about
 * a thousand mappings.
 *
 * The canary: the SP_CANARY_WORDS lowest words of every stack must stay zero.
 * Nothing ever writes them (fresh and MADV_DONTNEED'd memory reads as zero),
 * so checking them reads the kernel's shared zero page and the bottom page of
 * a stack never becomes resident: a parked fiber costs one page of stack, not
 * two. An overflow writes return addresses and saved registers through them,
 * which are not zero. Each switch out of a fiber checks the top word (one load
 * and compare), release checks them all, and a non-zero word aborts naming the
 * task: an overflow is caught at the task's next suspension, while it usually
 * still lies in the gap page. Guarded stacks are checked too, since a frame
 * bigger than a page can jump over the guard. What this cannot see: an
 * overflow that writes only zeros there, or a frame that jumps past both.

 * An overflow into a guard page faults. The SIGSEGV handler, on a per-thread
 * signal stack, recognises the page below the running fiber's stack, names
 * the task, and lets the fault end the process; it passes every other fault
 * to the handler installed before it (AddressSanitizer's, for one).
 *
 * Free stacks are reused LIFO. Up to hot_max of them stay resident; stacks
 * freed beyond that are emptied with MADV_DONTNEED (which leaves the mapping
 * whole) so a burst of tasks does not pin its peak memory. Stacks are never
 * unmapped one by one, which would split chunks: chunks go with the pool. */
#include "fiber.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef SP_FIBER_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define SP_NO_ASAN __attribute__((no_sanitize_address))
#else
#define SP_NO_ASAN
#endif
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SP_VALGRIND 1
#endif

#define SP_CANARY_WORDS  4
#define SP_CHUNK_FIRST   16   /* stacks in a pool's first chunk */
#define SP_CHUNK_MAX     1024 /* chunks double up to this many stacks */
#define SP_ALTSTACK_SIZE (64 * 1024)
#define SP_STACK_GUARDED ((uintptr_t)1) /* tag bit of a free-list entry */

#ifndef SP_FIBER_UCONTEXT
void sp_fiber_swap(void **save_sp, void *new_sp);
void sp_fiber_trampoline(void);
#endif

/* One mapping that stacks are carved from: [gap][stack][gap][stack]... */
typedef struct stack_chunk {
    struct stack_chunk *next;
    char *base;
    size_t size;
    long nguarded; /* the first nguarded gaps are PROT_NONE */
#ifdef SP_VALGRIND
    size_t nstacks;
    unsigned vg_id[];
#endif
} stack_chunk;

struct sp_stack_pool {
    size_t stack_size; /* usable bytes, page multiple */
    size_t slot;       /* gap page + stack: the stride inside a chunk */
    size_t next_chunk; /* stacks in the next chunk */
    size_t hot_max;
    /* Free stacks, LIFO, as stack_lo | SP_STACK_GUARDED. hot ones are
     * resident; cold ones were never touched or were given back. Both arrays
     * hold cap >= total entries, so releasing never allocates. */
    uintptr_t *hot;
    uintptr_t *cold;
    size_t nhot, ncold, cap;
    size_t total, guarded, nchunks;
    stack_chunk *chunks;
};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static size_t g_page;
static atomic_long g_guard_budget;
static atomic_long g_guards_used;

static pthread_once_t g_sig_once = PTHREAD_ONCE_INIT;
static int g_sig_err;
static struct sigaction g_old_segv, g_old_bus;

static _Thread_local sp_fiber *tl_current; /* read by the fault handler */
static _Thread_local void *tl_altstack;
static _Thread_local bool tl_thread_ready;
#ifdef SP_FIBER_ASAN
static _Thread_local sp_fiber *tl_switch_from;
#endif

static long read_max_map_count(void) {
    long n = 65530;
    int fd = open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return n;
    char buf[32];
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len > 0) {
        buf[len] = '\0';
        char *end;
        long v = strtol(buf, &end, 10);
        if (end != buf && v > 0)
            n = v;
    }
    return n;
}

static void global_init(void) {
    g_page = (size_t)sysconf(_SC_PAGESIZE);
    long budget = read_max_map_count() / 4;
    const char *env = getenv("SP_GUARD_PAGES");
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (*end == '\0' && v >= 0)
            budget = v;
    }
    atomic_store(&g_guard_budget, budget);
}

void sp_fiber_set_guard_budget(long n) {
    pthread_once(&g_once, global_init);
    atomic_store(&g_guard_budget, n < 0 ? 0 : n);
}

/* Takes up to want guard pages from the budget; returns how many. */
static long guard_reserve(long want) {
    long used = atomic_load(&g_guards_used);
    for (;;) {
        long avail = atomic_load(&g_guard_budget) - used;
        long take = avail < want ? avail : want;
        if (take <= 0)
            return 0;
        if (atomic_compare_exchange_weak(&g_guards_used, &used, used + take))
            return take;
    }
}

static void guard_unreserve(long n) {
    atomic_fetch_sub(&g_guards_used, n);
}

/* ---- Overflow reports: async-signal-safe, no stdio, no malloc. ---- */

typedef struct msg_buf {
    char text[320];
    size_t len;
} msg_buf;

static void msg_str(msg_buf *m, const char *s, size_t max) {
    for (size_t i = 0; s[i] && i < max && m->len < sizeof(m->text); i++)
        m->text[m->len++] = s[i];
}

static void msg_uint(msg_buf *m, size_t v) {
    char digits[24];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && m->len < sizeof(m->text))
        m->text[m->len++] = digits[--n];
}

static void msg_write(const msg_buf *m) {
    ssize_t r = write(STDERR_FILENO, m->text, m->len);
    (void)r; /* nothing better to do: the process is about to die */
}

static void report_overflow(const sp_fiber *f, const char *how) {
    msg_buf m = {.len = 0};
    msg_str(&m, "spindle: stack overflow in task '", SIZE_MAX);
    msg_str(&m, f->label ? f->label : "?", 160);
    msg_str(&m, "' (stack ", SIZE_MAX);
    msg_uint(&m, f->stack_size);
    msg_str(&m, " bytes", SIZE_MAX);
    msg_str(&m, how, SIZE_MAX);
    msg_str(&m, "); raise the stack size\n", SIZE_MAX);
    msg_write(&m);
}

/* Not instrumented: under ASan an overflowed canary may sit in a redzone, and
 * our report is the clearer one. */
SP_NO_ASAN static inline bool canary_top_ok(const sp_fiber *f) {
    return ((const uint64_t *)f->stack_lo)[SP_CANARY_WORDS - 1] == 0;
}

SP_NO_ASAN static bool canary_all_ok(const sp_fiber *f) {
    const uint64_t *w = (const uint64_t *)f->stack_lo;
    uint64_t diff = 0;
    for (int i = 0; i < SP_CANARY_WORDS; i++)
        diff |= w[i];
    return diff == 0;
}

static void on_fault(int sig, siginfo_t *si, void *uctx) {
    const sp_fiber *f = tl_current;
    uintptr_t addr = (uintptr_t)si->si_addr;
    if (si->si_code > 0 && f && f->stack_lo && addr < (uintptr_t)f->stack_lo &&
        addr >= (uintptr_t)f->stack_lo - g_page) {
        report_overflow(f, "");
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, NULL);
        return; /* the access faults again, now with the default action */
    }
    const struct sigaction *old = sig == SIGBUS ? &g_old_bus : &g_old_segv;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uctx);
    } else if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
        sigaction(sig, old, NULL);
        if (si->si_code <= 0)
            raise(sig); /* sent by kill(): returning would not repeat it */
    } else {
        old->sa_handler(sig);
    }
}

static void sig_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &g_old_segv) != 0 || sigaction(SIGBUS, &sa, &g_old_bus) != 0)
        g_sig_err = -errno;
}

int sp_fiber_thread_init(void) {
    pthread_once(&g_once, global_init);
    pthread_once(&g_sig_once, sig_install);
    if (g_sig_err)
        return g_sig_err;
    if (tl_thread_ready)
        return 0;
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0)
        return -errno;
    if (!(cur.ss_flags & SS_DISABLE)) {
        tl_thread_ready = true; /* keep the thread's own (ASan gives one) */
        return 0;
    }
    void *p = mmap(NULL, SP_ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED)
        return -ENOMEM;
    stack_t ss = {.ss_sp = p, .ss_size = SP_ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        int err = -errno;
        munmap(p, SP_ALTSTACK_SIZE);
        return err;
    }
    tl_altstack = p;
    tl_thread_ready = true;
    return 0;
}

void sp_fiber_thread_fini(void) {
    if (tl_altstack) {
        stack_t cur;
        if (sigaltstack(NULL, &cur) != 0)
            return;
        if (cur.ss_sp == tl_altstack) {
            stack_t off = {.ss_flags = SS_DISABLE};
            if (sigaltstack(&off, NULL) != 0)
                return; /* running on it: leave it be */
        }
        munmap(tl_altstack, SP_ALTSTACK_SIZE);
        tl_altstack = NULL;
    }
    tl_thread_ready = false;
}

/* ---- Stack pool ---- */

int sp_stack_pool_create(sp_stack_pool **out, size_t stack_size) {
    pthread_once(&g_once, global_init);
    if (stack_size < SP_FIBER_STACK_MIN)
        return -EINVAL;
    if (stack_size > SIZE_MAX / 2)
        return -ENOMEM; /* could never be mapped */
    sp_stack_pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    pool->stack_size = (stack_size + g_page - 1) & ~(g_page - 1);
    pool->slot = g_page + pool->stack_size;
    pool->next_chunk = SP_CHUNK_FIRST;
    pool->hot_max = SP_FIBER_HOT_STACKS;
    *out = pool;
    return 0;
}

void sp_stack_pool_destroy(sp_stack_pool *pool) {
    if (!pool)
        return;
    while (pool->chunks) {
        stack_chunk *c = pool->chunks;
        pool->chunks = c->next;
#ifdef SP_VALGRIND
        for (size_t i = 0; i < c->nstacks; i++)
            VALGRIND_STACK_DEREGISTER(c->vg_id[i]);
#endif
        munmap(c->base, c->size);
        guard_unreserve(c->nguarded);
        free(c);
    }
    free(pool->hot);
    free(pool->cold);
    free(pool);
}

void sp_stack_pool_set_hot_max(sp_stack_pool *pool, size_t n) {
    pool->hot_max = n;
    while (pool->nhot > n) {
        uintptr_t e = pool->hot[--pool->nhot];
        madvise((void *)(e & ~SP_STACK_GUARDED), pool->stack_size, MADV_DONTNEED);
        pool->cold[pool->ncold++] = e;
    }
}

void sp_stack_pool_stats(const sp_stack_pool *pool, struct sp_stack_pool_stats *out) {
    out->stack_size = pool->stack_size;
    out->total = pool->total;
    out->free = pool->nhot + pool->ncold;
    out->hot = pool->nhot;
    out->guarded = pool->guarded;
    out->unguarded = pool->total - pool->guarded;
    out->chunks = pool->nchunks;
}

/* Makes room in both free lists for n more stacks, so release never fails. */
static int pool_reserve(sp_stack_pool *pool, size_t n) {
    size_t want = pool->total + n;
    if (want <= pool->cap)
        return 0;
    uintptr_t *hot = realloc(pool->hot, want * sizeof(*hot));
    if (!hot)
        return -ENOMEM;
    pool->hot = hot;
    uintptr_t *cold = realloc(pool->cold, want * sizeof(*cold));
    if (!cold)
        return -ENOMEM;
    pool->cold = cold;
    pool->cap = want;
    return 0;
}

/* Maps a new chunk and puts its stacks on the cold list. Halves the chunk
 * until the kernel accepts it, down to one stack. */
static int pool_grow(sp_stack_pool *pool) {
    size_t n = pool->next_chunk;
    if (pool_reserve(pool, n) != 0)
        return -ENOMEM;
    char *base = MAP_FAILED;
    size_t size;
    for (;;) {
        if (!__builtin_mul_overflow(n, pool->slot, &size))
            base = mmap(NULL, size, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
        if (base != MAP_FAILED)
            break;
        if (n == 1)
            return -ENOMEM;
        n /= 2;
    }
    size_t csize = sizeof(stack_chunk);
#ifdef SP_VALGRIND
    csize += n * sizeof(unsigned);
#endif
    stack_chunk *c = malloc(csize);
    if (!c) {
        munmap(base, size);
        return -ENOMEM;
    }
#ifdef MADV_NOHUGEPAGE
    /* A huge page would make dozens of neighbouring stacks resident at once. */
    madvise(base, size, MADV_NOHUGEPAGE);
#endif
    long want = guard_reserve((long)n), guarded = 0;
    while (guarded < want && mprotect(base + (size_t)guarded * pool->slot, g_page, PROT_NONE) == 0)
        guarded++;
    guard_unreserve(want - guarded); /* the kernel's mapping limit came first */

    c->base = base;
    c->size = size;
    c->nguarded = guarded;
#ifdef SP_VALGRIND
    c->nstacks = n;
#endif
    /* Pushed top down so the guarded stacks, at the bottom, go out first. */
    for (size_t i = n; i-- > 0;) {
        char *lo = base + i * pool->slot + g_page;
#ifdef SP_VALGRIND
        c->vg_id[i] = VALGRIND_STACK_REGISTER(lo, lo + pool->stack_size);
#endif
        pool->cold[pool->ncold++] = (uintptr_t)lo | ((long)i < guarded ? SP_STACK_GUARDED : 0);
    }
    c->next = pool->chunks;
    pool->chunks = c;
    pool->nchunks++;
    pool->total += n;
    pool->guarded += (size_t)guarded;
    pool->next_chunk = n * 2 < SP_CHUNK_MAX ? n * 2 : SP_CHUNK_MAX;
    return 0;
}

/* ---- Fibers ---- */

#ifdef SP_FIBER_ASAN
/* Completes an ASan switch; when we came from the thread's own stack, this is
 * where ASan tells us its bounds, needed to switch back to it. */
static void asan_finish(void *fake) {
    const void *lo;
    size_t size;
    __sanitizer_finish_switch_fiber(fake, &lo, &size);
    sp_fiber *from = tl_switch_from;
    if (from && !from->stack_lo) {
        from->asan_lo = lo;
        from->asan_size = size;
    }
}
#endif

void sp_fiber_init_main(sp_fiber *f) {
    memset(f, 0, sizeof(*f));
    f->label = "main";
}

static _Noreturn void fiber_start(void *arg) {
    sp_fiber *f = arg;
#ifdef SP_FIBER_ASAN
    asan_finish(NULL);
#endif
    f->entry(f->arg);
    msg_buf m = {.len = 0};
    msg_str(&m, "spindle: the fiber of task '", SIZE_MAX);
    msg_str(&m, f->label ? f->label : "?", 160);
    msg_str(&m, "' returned from its entry instead of calling sp_fiber_exit\n", SIZE_MAX);
    msg_write(&m);
    abort();
}

/* The canary report runs here, not on the overflowed stack, which may have no
 * room left even for the dynamic linker. The first reporter takes it. */
static char g_report_stack[16 * 1024] __attribute__((aligned(16)));
static atomic_flag g_report_stack_taken = ATOMIC_FLAG_INIT;

static _Noreturn void canary_report(void *arg) {
#ifdef SP_FIBER_ASAN
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
    report_overflow(arg, ", canary overwritten");
    abort();
}

#ifdef SP_FIBER_UCONTEXT
static const sp_fiber *g_overflowed;

static void uc_start(void) {
    fiber_start(tl_current); /* makecontext passes only ints: the switch set it */
}

static void uc_canary_report(void) {
    canary_report((void *)g_overflowed);
}

__attribute__((noinline, cold)) static _Noreturn void canary_fail(const sp_fiber *f) {
    static ucontext_t uc, abandoned;
    if (!atomic_flag_test_and_set(&g_report_stack_taken) && getcontext(&uc) == 0) {
        g_overflowed = f;
        uc.uc_stack.ss_sp = g_report_stack;
        uc.uc_stack.ss_size = sizeof(g_report_stack);
        uc.uc_link = NULL;
        makecontext(&uc, uc_canary_report, 0);
#ifdef SP_VALGRIND
        VALGRIND_STACK_REGISTER(g_report_stack, g_report_stack + sizeof(g_report_stack));
#endif
#ifdef SP_FIBER_ASAN
        __sanitizer_start_switch_fiber(NULL, g_report_stack, sizeof(g_report_stack));
#endif
        /* Not setcontext: swapcontext is already bound, so no lazy symbol
         * lookup runs on the exhausted stack. */
        swapcontext(&abandoned, &uc);
    }
    canary_report((void *)f);
}
#else
/* Lays out the frame sp_fiber_swap pops on the first switch to a new stack:
 * zeroed callee-saved registers except fn and its argument, and a return
 * address into sp_fiber_trampoline, which calls the one with the other. */
static void *frame_init(char *top, void (*fn)(void *), void *arg) {
    void **sp = (void **)top;            /* page aligned, so 16-byte aligned */
#if defined(__x86_64__)
    *--sp = (void *)sp_fiber_trampoline; /* "returned" to: rsp = top, aligned for its call */
    *--sp = NULL;                        /* rbp */
    *--sp = NULL;                        /* rbx */
    *--sp = (void *)fn;                  /* r12 */
    *--sp = arg;                         /* r13 */
    *--sp = NULL;                        /* r14 */
    *--sp = NULL;                        /* r15 */
#elif defined(__aarch64__)
    sp -= 20; /* x19..x30, then d8..d15: 160 bytes, sp stays 16-byte aligned */
    memset(sp, 0, 20 * sizeof(*sp));
    sp[0] = (void *)fn;                   /* x19 */
    sp[1] = arg;                          /* x20 */
    sp[11] = (void *)sp_fiber_trampoline; /* x30: ret goes there */
#else
#error "no fiber switch for this CPU: build with SP_FIBER_UCONTEXT"
#endif
    return sp;
}

__attribute__((noinline, cold)) static _Noreturn void canary_fail(const sp_fiber *f) {
    if (!atomic_flag_test_and_set(&g_report_stack_taken)) {
        void *abandoned;
#ifdef SP_FIBER_ASAN
        __sanitizer_start_switch_fiber(NULL, g_report_stack, sizeof(g_report_stack));
#endif
#ifdef SP_VALGRIND
        VALGRIND_STACK_REGISTER(g_report_stack, g_report_stack + sizeof(g_report_stack));
#endif
        sp_fiber_swap(&abandoned, frame_init(g_report_stack + sizeof(g_report_stack), canary_report,
                                             (void *)f));
    }
    canary_report((void *)f);
}
#endif

int sp_fiber_create(sp_fiber *f, sp_stack_pool *pool, sp_fiber_entry_fn *entry, void *arg) {
    uintptr_t e;
    if (pool->nhot) {
        e = pool->hot[--pool->nhot];
    } else {
        if (!pool->ncold) {
            int err = pool_grow(pool);
            if (err)
                return err;
        }
        e = pool->cold[--pool->ncold];
    }
    char *lo = (char *)(e & ~SP_STACK_GUARDED);
    memset(f, 0, sizeof(*f));
    f->stack_lo = lo;
    f->stack_size = pool->stack_size;
    f->guarded = e & SP_STACK_GUARDED;
    f->entry = entry;
    f->arg = arg;
#ifdef SP_FIBER_ASAN
    /* A finished fiber never unwound its frames: clear their poisoned redzones. */
    ASAN_UNPOISON_MEMORY_REGION(lo, pool->stack_size);
#endif
#ifdef SP_FIBER_UCONTEXT
    if (getcontext(&f->uc) != 0)
        abort(); /* cannot fail on Linux: it only reads registers */
    f->uc.uc_stack.ss_sp = lo;
    f->uc.uc_stack.ss_size = pool->stack_size;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, uc_start, 0);
#else
    f->sp = frame_init(lo + pool->stack_size, fiber_start, f);
#endif
    return 0;
}

static inline void switch_to(sp_fiber *from, sp_fiber *to, void **fake_save) {
    if (from->stack_lo && __builtin_expect(!canary_top_ok(from), 0))
        canary_fail(from);
#ifdef SP_FIBER_ASAN
    const void *lo = to->stack_lo ? to->stack_lo : to->asan_lo;
    size_t size = to->stack_lo ? to->stack_size : to->asan_size;
    __sanitizer_start_switch_fiber(fake_save, lo, size);
    tl_switch_from = from;
#else
    (void)fake_save;
#endif
    tl_current = to;
#ifdef SP_FIBER_UCONTEXT
    swapcontext(&from->uc, &to->uc);
#else
    sp_fiber_swap(&from->sp, to->sp);
#endif
#ifdef SP_FIBER_ASAN
    asan_finish(from->asan_fake);
#endif
}

void sp_fiber_switch(sp_fiber *from, sp_fiber *to) {
    switch_to(from, to, &from->asan_fake);
}

void sp_fiber_exit(sp_fiber *from, sp_fiber *to) {
    switch_to(from, to, NULL); /* NULL: ASan drops from's fake stack */
    abort();
}

void sp_fiber_release(sp_fiber *f, sp_stack_pool *pool) {
    if (!f->stack_lo)
        return;
    if (!canary_all_ok(f))
        canary_fail(f);
    uintptr_t e = (uintptr_t)f->stack_lo | (f->guarded ? SP_STACK_GUARDED : 0);
    if (pool->nhot < pool->hot_max) {
        pool->hot[pool->nhot++] = e;
    } else {
        madvise(f->stack_lo, f->stack_size, MADV_DONTNEED);
        pool->cold[pool->ncold++] = e;
    }
    f->stack_lo = NULL;
}
