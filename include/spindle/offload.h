/* Offload: running blocking or CPU-bound work without blocking the loop.
 * sp_to_thread runs a function on the loop's thread pool (asyncio.to_thread,
 * run_in_executor with the default ThreadPoolExecutor); a process pool runs
 * functions in forked worker processes (run_in_executor with a
 * ProcessPoolExecutor), exchanging arguments and results as bytes. */
#ifndef SPINDLE_OFFLOAD_H
#define SPINDLE_OFFLOAD_H

#include <stddef.h>

/* ---- Threads ---- */

/* A function run on a pool thread: returns 0 with its result in *result
 * (which starts NULL), or a negative error code. It runs outside any task and
 * outside the loop: it may block, but must not call Spindle functions that
 * suspend or touch the loop (sp_sleep, sp_spawn, sp_io_wait, futures, ...). */
typedef int sp_thread_fn(void *arg, void **result);

/* Takes over what a call abandoned by its caller leaves behind: the arg it was
 * given and whatever result fn stored (NULL if fn never ran). Runs on the loop
 * thread, outside any task; must not suspend. */
typedef void sp_thread_discard_fn(void *arg, void *result);

/* Runs fn(arg) on the calling loop's thread pool and suspends the calling task
 * until it returns; other tasks keep running. Returns fn's outcome: 0 with its
 * result in *result (result may be NULL; ownership as fn documents), or fn's
 * error. Also -ECANCELED, -EPERM outside a task, -EINVAL if fn is NULL,
 * -ENOMEM, -EAGAIN if no thread could be started. Suspends.
 *
 * Cancellation (as asyncio): a call still queued is removed and fn never runs;
 * a call whose fn is running returns -ECANCELED at once while fn runs on to
 * completion in the background. arg must therefore stay valid until fn
 * returns. With a non-NULL discard, every -ECANCELED return hands arg over:
 * discard(arg, result) is called exactly once, before the call returns if fn
 * never started or had already finished, else when fn finishes (at the latest
 * when sp_run tears the loop down), so heap-allocated args and results of
 * abandoned calls don't leak. With discard NULL, a late result is dropped. */
int sp_to_thread(sp_thread_fn *fn, void *arg, sp_thread_discard_fn *discard, void **result);

/* Sets how many threads the calling loop's pool may start (lazily, one per
 * queued call without an idle thread). The default is min(32, CPUs + 4), as
 * Python's ThreadPoolExecutor. Returns 0, -EINVAL if n < 1, -EPERM outside a
 * loop, -EBUSY if the pool already runs more than n threads, -ENOMEM. Never
 * suspends. */
int sp_offload_set_threads(int n);

/* ---- Processes ---- */

/* The largest argument or result a process pool carries: 64 MiB. */
#define SP_PROCPOOL_MAX_MSG ((size_t)64 << 20)

typedef struct sp_procpool sp_procpool;

/* A function run in a worker process: reads in_len bytes at in, and returns 0
 * with *out (malloc'ed, or NULL when *out_len is 0) and *out_len set, or a
 * negative error code. The worker frees *out after sending it, and frees it on
 * failure too. It runs in a forked copy of the program as it was when the pool
 * was created: changes the parent makes later are not seen, and it must not
 * call Spindle functions. */
typedef int sp_proc_fn(const void *in, size_t in_len, void **out, size_t *out_len);

/* Creates a pool of nworkers processes (0: one per CPU). The workers are
 * forked from a helper process that is forked here, once, from the current
 * program image (as Python's "forkserver"): create pools early, before
 * starting threads (sp_to_thread's included), since a fork copies only the
 * calling thread. Workers keep stdin, stdout and stderr but no other inherited
 * descriptors, and ignore SIGINT (the parent decides when they stop). The
 * helper is not a child of the caller, so nothing needs reaping here. May be
 * called inside or outside a loop; a pool serves one loop at a time. Returns
 * 0, -EINVAL if nworkers < 0, -ENOMEM, -EAGAIN or -EMFILE if processes or
 * descriptors ran out. Never suspends. */
int sp_procpool_create(sp_procpool **pool, int nworkers);

/* Runs fn(in, in_len) in an idle worker and suspends the calling task until it
 * replies; when all workers are busy, callers wait in FIFO order. in is
 * borrowed for the duration of the call. On success returns 0 with fn's
 * output in *out (the caller frees it with free(); NULL when empty) and
 * *out_len. Errors: fn's own error; -EMSGSIZE if in_len or the output exceeds
 * SP_PROCPOOL_MAX_MSG; -ECHILD if the worker died while running it (message
 * "worker process died (signal N)"; the worker is replaced and other calls are
 * unaffected); -EPIPE if the pool cannot start workers any more; -EPROTO on a
 * garbled reply; -EXDEV if another loop uses the pool; -EINVAL; -EPERM outside
 * a task; -ECANCELED. Cancelling a call still waiting for a worker removes it;
 * cancelling one already sent returns -ECANCELED at once, and the worker's
 * reply is read and dropped when it comes (the worker stays busy until then).
 * fn must be code that was loaded when the pool was created. Suspends. */
int sp_procpool_run(sp_procpool *pool, sp_proc_fn *fn, const void *in, size_t in_len, void **out,
                    size_t *out_len);

/* Destroys the pool: calls still waiting fail with -EPIPE, the workers are
 * told to stop (those busy are killed) and are reaped by the helper, which
 * then exits. Call it from the loop thread using the pool, or from any thread
 * once no loop uses it. Neither blocks nor suspends. pool may be NULL. */
void sp_procpool_destroy(sp_procpool *pool);

#endif
