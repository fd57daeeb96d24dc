/* HTTP/1.1 client: one call makes a request and suspends the calling task
 * until the response arrives (aiohttp's ClientSession.request), over a pool of
 * keep-alive connections per origin (scheme, host, port).
 *
 * A client belongs to the loop thread that created it (there is no implicit
 * per-loop default: create one, share it between that loop's tasks, destroy
 * it before the loop ends). Names are resolved with libevent's evdns on the
 * loop (honouring /etc/hosts; numeric IPv4/IPv6 hosts skip resolution), so
 * nothing blocks the loop.
 *
 * A response holds its connection until it is freed: header and body views
 * point into that connection's buffer (no copies). Free it promptly; the
 * connection then goes back to the pool if the body was read to its end,
 * else it is closed. Until then it counts against max_conns_per_origin.
 *
 * Errors are negative errno codes, each with a message (in the optional
 * sp_http_client_error and in the calling task's error message, sp_fail):
 *   -EINVAL        bad URL, method or header (CR/LF, Content-Length, ...)
 *   -EPROTONOSUPPORT  a scheme other than http (https comes later)
 *   -ENXIO         the name does not resolve (no such host, no address)
 *   -ECONNREFUSED  nobody listens on the upstream's port
 *   -ETIMEDOUT     a timeout expired; the message names the phase: resolve,
 *                  waiting for a pooled connection, connect, first byte, total
 *   -ECONNRESET    the upstream reset the connection, or closed it before
 *                  sending any byte of the response
 *   -EPROTO        a malformed response (a garbage status line is never taken
 *                  for HTTP/0.9), or one cut short: the upstream closed the
 *                  connection mid-head or before the body's announced end
 *   -EMSGSIZE      the head exceeds max_header_bytes, or the body read whole
 *                  exceeds max_response_bytes (both refused as soon as seen)
 *   -ECANCELED     the calling task was cancelled (no message)
 *   -EPERM         not called from a task of the client's loop
 *   -ENOMEM, and other -errno from socket(2)/connect(2) (-ENETUNREACH, ...)
 *
 * Retries: a pooled connection the upstream closed while idle is detected
 * before reuse (a non-blocking peek) and replaced, for any method. If a
 * request on a reused connection then fails before any response byte arrives
 * (the upstream closed it meanwhile), an idempotent request (GET, HEAD, PUT,
 * DELETE, OPTIONS, TRACE) is sent once more on a fresh connection; any other
 * (POST, PATCH) fails with -ECONNRESET, since the upstream may have acted on
 * it. */
#ifndef SPINDLE_CLIENT_H
#define SPINDLE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <spindle/http.h>

typedef struct sp_http_client sp_http_client;
typedef struct sp_http_client_resp sp_http_client_resp;

/* Client settings. sp_http_client_config_init() fills the defaults (in
 * brackets). Timeouts are in seconds; a negative one means no limit. */
typedef struct sp_http_client_config {
    size_t max_conns_per_origin; /* open connections per origin, 0: no limit; more
                                    requests queue FIFO for one [100] */
    double idle_timeout;         /* a pooled connection unused this long is closed [15] */
    double resolve_timeout;      /* name resolution [5] */
    double connect_timeout;      /* each of: waiting for a pooled connection or a free
                                    slot, and the TCP connect (all addresses) [10] */
    double first_byte_timeout;   /* from sending the request to the first response
                                    byte [30] */
    double total_timeout;        /* the whole request, body included [300] */
    size_t max_header_bytes;     /* status line and headers [64 KiB] */
    size_t max_response_bytes;   /* a body read whole [64 MiB] */
    const char *nameservers;     /* "ip[:port],..." to ask instead of /etc/resolv.conf's
                                    (copied); /etc/hosts is read either way [NULL] */
} sp_http_client_config;

/* Fills cfg with the defaults. Never suspends. */
void sp_http_client_config_init(sp_http_client_config *cfg);

/* Creates a client for the calling thread's loop (cfg copied; NULL: the
 * defaults). Returns 0, -EINVAL for a bad setting, -EPERM outside a loop
 * thread, -ENOMEM. Never suspends. */
int sp_http_client_create(sp_http_client **out, const sp_http_client_config *cfg);

/* Closes the pooled connections and frees the client. Every request must
 * have returned and every response been freed: otherwise returns -EBUSY and
 * does nothing. Returns 0. Never suspends. */
int sp_http_client_destroy(sp_http_client *cl);

/* A header field: views, so a proxy can forward a request's headers as is. */
typedef struct sp_http_field {
    sp_str name, value;
} sp_http_field;

/* A field from two string literals. */
#define SP_HTTP_FIELD(name, value)                                                                 \
    {                                                                                              \
        {name, sizeof(name) - 1}, {                                                                \
            value, sizeof(value) - 1                                                               \
        }                                                                                          \
    }

/* One request. Zero-initialise it, then set what you need. */
typedef struct sp_http_request {
    const char *method;           /* a token such as "GET" (NULL: "GET"); not CONNECT */
    const char *url;              /* "http://host[:port][/path][?query]", host a name, an
                                     IPv4 address or "[IPv6]"; a #fragment is dropped */
    const sp_http_field *headers; /* sent in order after Host (unless given here);
                                     Content-Length and Transfer-Encoding are refused:
                                     the client frames the body itself */
    size_t nheaders;
    const void *body; /* sent with Content-Length (always for POST, PUT, PATCH) */
    size_t body_len;
    bool stream; /* return after the head; read the body with
                    sp_http_client_resp_read or _body */
    /* Per-request overrides of the client's settings; 0 keeps the client's. */
    double connect_timeout, first_byte_timeout, total_timeout;
    size_t max_response_bytes;
} sp_http_request;

/* What went wrong: the code returned and a message naming the upstream and
 * the phase ("timed out connecting to 10.0.0.7:8080 after 10 s"). */
typedef struct sp_http_client_error {
    int code;
    char msg[200];
} sp_http_client_error;

/* Sends req and suspends until the response's head (req->stream) or its whole
 * body has arrived. On success *out is a response the caller frees with
 * sp_http_client_resp_free; its status may be any (404 and 500 are
 * responses, not errors). Borrowed until it returns: req and what it points
 * to. On failure returns a code listed at the top of this file, with its
 * message in *err (if err is non-NULL) and in the calling task's error
 * message; nothing is left to free and the connection used (if any) is
 * closed. Cancelling the caller at any point (resolution, queueing for a
 * connection, connect, writing, waiting, reading) returns -ECANCELED and
 * leaves nothing half-read in the pool. Suspends. */
int sp_http_client_request(sp_http_client *cl, const sp_http_request *req,
                           sp_http_client_resp **out, sp_http_client_error *err);

/* A GET of url with the client's settings, as sp_http_client_request. */
int sp_http_client_get(sp_http_client *cl, const char *url, sp_http_client_resp **out,
                       sp_http_client_error *err);

/* The response's status code (200) and HTTP version (11 for 1.1, 10 for 1.0). */
int sp_http_client_resp_status(const sp_http_client_resp *resp);
int sp_http_client_resp_version(const sp_http_client_resp *resp);

/* The first header `name` (case-insensitive) in *value, a view valid until
 * the response is freed. Returns 0 or -ENOENT. */
int sp_http_client_resp_header(const sp_http_client_resp *resp, const char *name, sp_str *value);

/* Header count, and the i-th header in arrival order (0 or -ENOENT), views
 * valid until the response is freed. */
size_t sp_http_client_resp_header_count(const sp_http_client_resp *resp);
int sp_http_client_resp_header_at(const sp_http_client_resp *resp, size_t i, sp_str *name,
                                  sp_str *value);

/* The whole body in *body, a view valid until the response is freed (empty
 * for HEAD, 1xx, 204 and 304). Already there unless the request streamed; a
 * streamed response is read to its end here (suspends), unless pieces of it
 * were already read (-EALREADY). Other errors as sp_http_client_request
 * (-EMSGSIZE, -ETIMEDOUT, -ECONNRESET, -EPROTO, -ECANCELED), also in err if
 * non-NULL. */
int sp_http_client_resp_body(sp_http_client_resp *resp, sp_str *body, sp_http_client_error *err);

/* The next piece of the body as it arrives, in *piece (a view valid until the
 * next call or the free), or an empty piece at the end. A body already read
 * whole comes as one piece. Errors as sp_http_client_resp_body; a failed
 * read fails every later one the same way, except -ECANCELED, after which
 * reading may go on. max_response_bytes does not apply to pieces. Suspends
 * while nothing has arrived. */
int sp_http_client_resp_read(sp_http_client_resp *resp, sp_str *piece, sp_http_client_error *err);

/* Frees the response: its connection goes back to the pool when the body was
 * read to its end and both sides allow keep-alive, else it is closed. Never
 * suspends. NULL is a no-op. */
void sp_http_client_resp_free(sp_http_client_resp *resp);

/* Counters of a client, for monitoring and tests. */
typedef struct sp_http_client_stats {
    size_t connections; /* open now, idle or in use */
    size_t idle;        /* of which pooled, unused */
    size_t waiting;     /* requests queued for a connection */
    size_t opened;      /* connections opened since creation */
    size_t reused;      /* requests sent on a pooled connection */
} sp_http_client_stats;

/* Copies the client's counters into *out. Never suspends. */
void sp_http_client_get_stats(const sp_http_client *cl, sp_http_client_stats *out);

#endif
