/* Fibers: a stack plus a saved stack pointer, and the one call that switches
 * between two of them. Private to core/. The scheduler (sched.c) is the only
 * caller of sp_fiber_switch; tasks (task.c) own one fiber each. Stacks come
 * from a per-thread sp_stack_pool; see fiber.c for the guard-page budget. */
#ifndef SP_CORE_FIBER_H
#define SP_CORE_FIBER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef SP_FIBER_UCONTEXT
#include <ucontext.h>
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SP_FIBER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(SP_FIBER_ASAN)
#define SP_FIBER_ASAN 1
#endif

/* Smallest stack a pool accepts: below this, libc calls alone can overflow. */
#define SP_FIBER_STACK_MIN (16 * 1024)
/* Free stacks a pool keeps resident unless told otherwise. */
#define SP_FIBER_HOT_STACKS 1024

typedef struct sp_stack_pool sp_stack_pool;
typedef void sp_fiber_entry_fn(void *arg);

typedef struct sp_fiber {
    void *sp;            /* saved stack pointer while not running */
    char *stack_lo;      /* lowest usable byte of the stack (NULL: thread's own stack) */
    size_t stack_size;   /* usable bytes above stack_lo; the canary takes the lowest */
    bool guarded;        /* a PROT_NONE page lies below stack_lo */
    const char *label;   /* names the fiber in crash reports (task name) */
    void *asan_fake;     /* AddressSanitizer fake-stack handle while switched out */
    const void *asan_lo; /* for the thread's own stack: bounds learnt at first switch */
    size_t asan_size;
    sp_fiber_entry_fn *entry; /* first code run on the fiber's stack */
    void *arg;
#ifdef SP_FIBER_UCONTEXT
    ucontext_t uc; /* the portable fallback saves everything here instead of sp */
#endif
} sp_fiber;

/* What a pool holds, for tests and benchmarks. */
struct sp_stack_pool_stats {
    size_t stack_size; /* usable bytes per stack */
    size_t total;      /* stacks carved so far (in use + free) */
    size_t free;       /* stacks waiting in the pool */
    size_t hot;        /* of those, kept resident (the rest were given back with madvise) */
    size_t guarded;    /* carved stacks with a PROT_NONE page below them */
    size_t unguarded;  /* carved stacks protected by their canary only */
    size_t chunks;     /* mappings the stacks were carved from */
};

/* Creates the stack pool of one loop thread (pools are not thread-safe).
 * stack_size is rounded up to whole pages. Returns 0, -EINVAL if stack_size
 * is below SP_FIBER_STACK_MIN, -ENOMEM. Maps nothing until the first fiber. */
int sp_stack_pool_create(sp_stack_pool **out, size_t stack_size);

/* Unmaps every stack of the pool and gives its guard pages back to the
 * process-wide budget. No fiber of the pool may still be alive. */
void sp_stack_pool_destroy(sp_stack_pool *pool);

/* Sets how many free stacks the pool keeps resident (default
 * SP_FIBER_HOT_STACKS). Stacks freed beyond that have their memory given back
 * to the kernel before they are pooled. */
void sp_stack_pool_set_hot_max(sp_stack_pool *pool, size_t n);

/* Fills *out with the pool's counters. */
void sp_stack_pool_stats(const sp_stack_pool *pool, struct sp_stack_pool_stats *out);

/* Sets the process-wide number of guard pages all pools together may create
 * (each costs two of the kernel's vm.max_map_count mappings). The default is
 * max_map_count / 4, or the SP_GUARD_PAGES environment variable. Stacks
 * carved once the budget is spent rely on their canary. Negative n means 0.
 * Stacks that already have guards keep them. Thread-safe. */
void sp_fiber_set_guard_budget(long n);

/* Prepares the calling thread to report fiber stack overflows: gives it a
 * signal stack (unless it already has one) and, once per process, installs
 * the SIGSEGV/SIGBUS handler that names the overflowing task and chains to
 * the previous handler for every other fault. Idempotent. Returns 0, -ENOMEM,
 * or the negative errno of sigaction/sigaltstack. */
int sp_fiber_thread_init(void);

/* Removes the signal stack sp_fiber_thread_init gave this thread. */
void sp_fiber_thread_fini(void);

/* Prepares the calling thread's own context (no stack of ours). */
void sp_fiber_init_main(sp_fiber *f);

/* Gives f a stack from pool, set up so that the first switch into it calls
 * entry(arg). entry must never return: it ends with sp_fiber_exit(). Clears
 * *f first, so set f->label afterwards. Returns 0, -ENOMEM when no stack can
 * be mapped. */
int sp_fiber_create(sp_fiber *f, sp_stack_pool *pool, sp_fiber_entry_fn *entry, void *arg);

/* Saves the running context into from and resumes to. Returns when someone
 * switches back into from. Aborts with a message naming from->label if from
 * overflowed its stack. */
void sp_fiber_switch(sp_fiber *from, sp_fiber *to);

/* Like sp_fiber_switch, but from is finished and never resumed: its stack may
 * be released by the code that runs next (sp_fiber_release). */
_Noreturn void sp_fiber_exit(sp_fiber *from, sp_fiber *to);

/* Returns f's stack to pool, the pool it came from. f must not be running.
 * Aborts with a message if f overflowed its stack. */
void sp_fiber_release(sp_fiber *f, sp_stack_pool *pool);

#endif
