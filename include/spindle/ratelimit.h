/* Rate limiting with token buckets: a bucket holds up to `burst` tokens and
 * refills continuously at `rate` tokens per second on the monotonic clock,
 * starting full. Taking n tokens either succeeds now (try_acquire, with the
 * wait to advertise in Retry-After when it fails) or waits for them in FIFO
 * order (acquire). A keyed map holds one bucket per client with bounded
 * memory, for per-IP limits in servers (nginx's limit_req, with nodelay). */
#ifndef SPINDLE_RATELIMIT_H
#define SPINDLE_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>
#include <spindle/future.h>

/* One bucket, allocated by the user; fields are private. */
typedef struct sp_ratelimit {
    double priv_rate;   /* tokens per second */
    double priv_burst;  /* capacity */
    double priv_tokens; /* as of priv_stamp */
    double priv_queued; /* tokens the waiting tasks ask for */
    int64_t priv_stamp; /* ns on the monotonic clock */
    sp_list priv_waiters;
} sp_ratelimit;

/* A bucket's state, for the RateLimit-Limit, RateLimit-Remaining and
 * RateLimit-Reset response headers (round reset up for the header). */
typedef struct sp_ratelimit_info {
    double limit;     /* the burst */
    double remaining; /* whole tokens that can be taken now */
    double reset;     /* seconds until the bucket is full again */
} sp_ratelimit_info;

/* Initializes a full bucket. rate and burst must be positive and finite.
 * Returns 0 or -EINVAL. Never suspends. */
int sp_ratelimit_init(sp_ratelimit *rl, double rate, double burst);

/* Checks that no task waits on rl any more, before its memory is reused.
 * Returns 0, or -EBUSY while tasks wait. */
int sp_ratelimit_fini(sp_ratelimit *rl);

/* Takes n tokens if they are there and no task is waiting ahead (waiters are
 * served first). Returns 0; -EAGAIN with *retry_after (may be NULL) set to the
 * seconds until the request could succeed, counting the tokens waiters will
 * take first; -EINVAL if n < 0 or n > burst (it could never succeed). Works
 * outside a loop too. Never suspends. */
int sp_ratelimit_try_acquire(sp_ratelimit *rl, double n, double *retry_after);

/* Takes n tokens, suspending the calling task until they are available;
 * waiters are served in FIFO order, so a small request never overtakes a big
 * one. timeout < 0 waits without limit. Returns 0; -ETIMEDOUT at once when
 * even with no one ahead the tokens could not accumulate within timeout,
 * otherwise -ETIMEDOUT when the timeout has elapsed; -ECANCELED (no token is
 * consumed); -EINVAL if n < 0, n > burst or timeout is NaN; -EPERM outside a
 * task when it would have to wait. Suspends. */
int sp_ratelimit_acquire(sp_ratelimit *rl, double n, double timeout);

/* Reports the bucket's state now, waiters' demand deducted. Never suspends. */
void sp_ratelimit_query(sp_ratelimit *rl, sp_ratelimit_info *info);

/* ---- One bucket per key ---- */

/* Buckets keyed by byte strings (a client's address, an API key), all with
 * the same rate and burst. At most max_keys are held: a new key evicts the
 * least recently used one, and buckets idle long enough to be full again are
 * dropped, since a fresh bucket behaves the same. Not thread-safe. */
typedef struct sp_ratelimit_map sp_ratelimit_map;

/* The longest key a map accepts, in bytes. */
#define SP_RATELIMIT_KEY_MAX 256

/* Creates a map. rate and burst as sp_ratelimit_init; max_keys >= 1. Returns
 * 0, -EINVAL or -ENOMEM. Never suspends. */
int sp_ratelimit_map_create(sp_ratelimit_map **map, double rate, double burst, size_t max_keys);

/* Frees the map and its buckets. map may be NULL. */
void sp_ratelimit_map_destroy(sp_ratelimit_map *map);

/* Takes n tokens from key's bucket (created full if absent) and marks the key
 * most recently used. Returns 0 or -EAGAIN, as sp_ratelimit_try_acquire, with
 * *retry_after (may be NULL) on -EAGAIN and, if info is non-NULL, the bucket's
 * state after the attempt; -EINVAL if n < 0, n > burst, or keylen is 0 or
 * above SP_RATELIMIT_KEY_MAX; -ENOMEM. The key is copied. Never suspends. */
int sp_ratelimit_map_try_acquire(sp_ratelimit_map *map, const void *key, size_t keylen, double n,
                                 double *retry_after, sp_ratelimit_info *info);

/* Number of keys held. */
size_t sp_ratelimit_map_count(const sp_ratelimit_map *map);

#endif
