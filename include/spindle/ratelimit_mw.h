/* Rate limiting middleware for the HTTP server, on the token buckets of
 * spindle/ratelimit.h: a limiter installed with sp_router_use() on a router or
 * a group answers 429 Too Many Requests once its bucket is empty, or queues
 * the request until a token comes (nginx's limit_req with and without nodelay).
 *
 * What shares a bucket (sp_ratelimit_mw_config.by):
 *   0                       one bucket for every request the limiter sees: the
 *                           routes of the router or group it is installed on
 *                           (on the root router, its 404 and 405 answers too);
 *   SP_RATELIMIT_BY_ROUTE   one bucket per route pattern (the methods of a
 *                           pattern share it; unrouted requests share one);
 *   SP_RATELIMIT_BY_IP      one bucket per client address (IPv4, or the whole
 *                           IPv6 address; an IPv4-mapped one counts as IPv4);
 *   both bits               one per client and pattern.
 * Keyed buckets live in an sp_ratelimit_map: at most max_keys, least recently
 * used evicted first (an evicted client starts again with a full bucket).
 *
 * One limiter is shared by every worker thread of the server, under a mutex
 * held for one bucket update: "100 requests/s" means 100 per second for the
 * whole server, however connections spread over the workers.
 *
 * Every response that passes carries RateLimit-Limit (the burst),
 * RateLimit-Remaining (whole tokens left) and RateLimit-Reset (seconds until
 * the bucket is full again, rounded up), after draft-ietf-httpapi-ratelimit-
 * headers. A refused request gets 429 with those and Retry-After (seconds
 * until it would pass, rounded up, at least 1); the connection stays open.
 *
 * Queueing (max_wait > 0, one bucket only: by == 0): a request over the limit
 * reserves the next free token and waits for it, so requests are let through
 * in arrival order at the bucket's rate; one that would wait longer than
 * max_wait is refused with 429 at once, with Retry-After saying when it would
 * be queued. The queue holds at most max_wait x rate requests. A client that
 * goes away while queued cancels its request, which hands its reservation
 * back: no token is spent on it. */
#ifndef SPINDLE_RATELIMIT_MW_H
#define SPINDLE_RATELIMIT_MW_H

#include <stddef.h>
#include <spindle/http.h>

/* Bits of sp_ratelimit_mw_config.by. */
enum { SP_RATELIMIT_BY_ROUTE = 1, SP_RATELIMIT_BY_IP = 2 };

/* Limiter settings. sp_ratelimit_mw_config_init() fills the defaults (in
 * brackets); rate must be set. */
typedef struct sp_ratelimit_mw_config {
    double rate;     /* requests per second, server-wide [0: must be set] */
    double burst;    /* bucket size: requests that may pass at once, >= 1 [1] */
    unsigned by;     /* SP_RATELIMIT_BY_* bits; 0: one bucket [0] */
    size_t max_keys; /* keyed buckets held at most [10000] */
    double max_wait; /* > 0: queue requests up to this many seconds [0: 429 at once] */
} sp_ratelimit_mw_config;

/* Fills cfg with the defaults shown in brackets above; rate must still be set.
 * Never suspends. */
void sp_ratelimit_mw_config_init(sp_ratelimit_mw_config *cfg);

typedef struct sp_ratelimit_mw sp_ratelimit_mw;

/* Creates a limiter from cfg (copied), its buckets full. Install it with
 * sp_router_use(router, sp_ratelimit_mw_handle, limiter), on one router or
 * several (they then share its buckets). Returns 0; -EINVAL for a rate or
 * burst not finite and positive, burst < 1, unknown bits in by, max_keys 0
 * with by set, max_wait negative or not finite, or max_wait > 0 with by set;
 * -ENOMEM. Never suspends. */
int sp_ratelimit_mw_create(sp_ratelimit_mw **out, const sp_ratelimit_mw_config *cfg);

/* Frees the limiter (NULL is ignored). The servers using it must have
 * stopped. Never suspends. */
void sp_ratelimit_mw_destroy(sp_ratelimit_mw *mw);

/* The middleware (arg: the limiter). Takes a token and runs the rest of the
 * chain with the RateLimit-* headers added, returning what it returns; or
 * answers 429 itself and returns that send's result. In queueing mode it
 * first waits for its token; cancelled meanwhile (the client went away), it
 * returns -ECANCELED and gives the reservation back. Returns -ENOMEM if a
 * new key could not be stored (the server answers 500). May suspend. */
int sp_ratelimit_mw_handle(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg);

/* Number of keyed buckets held now (0 for a single bucket). Never suspends. */
size_t sp_ratelimit_mw_keys(sp_ratelimit_mw *mw);

#endif
