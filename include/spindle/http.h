/* HTTP/1.1 server: requests, responses, handlers and the server itself.
 *
 * A handler runs in its connection's task and reads like blocking code: it
 * may await anything (sleep, gather, queues, to_thread, upstream fetches).
 * Strings handed out by a request are views into the connection's buffers,
 * valid until the handler returns. If the client goes away while a handler
 * is suspended, the handler's task is cancelled (its calls return
 * -ECANCELED), and with it whatever it awaits. */
#ifndef SPINDLE_HTTP_H
#define SPINDLE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* A byte string that is not NUL-terminated: a view into someone's buffer. */
typedef struct sp_str {
    const char *ptr;
    size_t len;
} sp_str;

/* A view of a NUL-terminated string (NULL gives an empty view). */
sp_str sp_str_c(const char *s);
/* True if a and b hold the same bytes; the _case form ignores ASCII case. */
bool sp_str_eq(sp_str a, sp_str b);
bool sp_str_eq_case(sp_str a, sp_str b);

typedef struct sp_http_req sp_http_req;
typedef struct sp_http_resp sp_http_resp;

/* Handles one request. A route added with SP_ROUTE_BLOCKING runs its handler
 * on a to_thread worker instead: it may block but not suspend, its body is
 * read before it starts, and it cannot be interrupted (a forced stop waits
 * for it). Returns 0 once it has answered. On a negative error
 * with nothing sent yet the server answers for it: -EMSGSIZE 413, -ETIMEDOUT
 * 408, -EBADMSG 400, anything else 500 (logged with the route and task); if
 * the response had started, the connection is closed. Runs in the
 * connection's task; may suspend. */
typedef int sp_http_handler(sp_http_req *req, sp_http_resp *resp, void *arg);

/* The rest of a middleware chain, handed to each middleware. */
typedef struct sp_http_next sp_http_next;

/* Wraps the handlers of a router: may inspect or answer the request itself,
 * or call sp_http_next_call() to run the rest of the chain and then
 * post-process. Returns as a handler does. */
typedef int sp_http_middleware(sp_http_req *req, sp_http_resp *resp, sp_http_next *next, void *arg);

/* Runs the rest of the chain (the next middleware, finally the handler).
 * Returns what it returned. May suspend. */
int sp_http_next_call(sp_http_next *next, sp_http_req *req, sp_http_resp *resp);

/* ---- Requests ----------------------------------------------------------- */

/* The request method ("GET") and request-target as sent ("/a%20b?x=1"). */
sp_str sp_http_req_method(const sp_http_req *req);
sp_str sp_http_req_target(const sp_http_req *req);
/* The target's path, percent-decoded with "." and ".." segments resolved and
 * repeated slashes merged, as nginx's $uri ("/a b"); and the raw query
 * ("x=1"). A path climbing above "/" is refused with 400 before any
 * handler runs. "OPTIONS *" has path "*": the server answers it itself (200),
 * inside the root router's middleware. */
sp_str sp_http_req_path(const sp_http_req *req);
sp_str sp_http_req_query_string(const sp_http_req *req);
/* 10 for HTTP/1.0, 11 for HTTP/1.1. */
int sp_http_req_version(const sp_http_req *req);

/* The first query parameter `name`, decoded ('+' and %XX), in *value (a view
 * valid until the handler returns, NUL-terminated: a "%00" in it shows as a
 * NUL byte within len). Returns 0, -ENOENT, -ENOMEM. */
int sp_http_req_query(sp_http_req *req, const char *name, sp_str *value);

/* The first header `name` (case-insensitive). Returns 0 or -ENOENT. */
int sp_http_req_header(const sp_http_req *req, const char *name, sp_str *value);
/* Header count, and the i-th header in arrival order (0 or -ENOENT). */
size_t sp_http_req_header_count(const sp_http_req *req);
int sp_http_req_header_at(const sp_http_req *req, size_t i, sp_str *name, sp_str *value);

/* A path parameter captured by the route (":id" as "id", a final "*" as
 * "*"). Returns 0 or -ENOENT. */
int sp_http_req_param(const sp_http_req *req, const char *name, sp_str *value);

/* The client's address (owned by the connection). */
const struct sockaddr *sp_http_req_peer(const sp_http_req *req, socklen_t *len);

/* The index of the worker serving the request (0..workers-1), and what the
 * server's worker_start hook stored for it (NULL without one). Never
 * suspends. */
int sp_http_req_worker(const sp_http_req *req);
void *sp_http_req_worker_data(const sp_http_req *req);

/* The route pattern that matched ("/users/:id"), or "" when none did. */
const char *sp_http_req_route(const sp_http_req *req);

/* Reads the whole body (at most the server's max_body bytes) and returns a
 * view of it, valid until the handler returns. A second call returns the same
 * body. Returns 0, -EMSGSIZE (too large: return it to answer 413),
 * -ETIMEDOUT (body timeout), -EBADMSG (bad chunked encoding), -ECANCELED,
 * -ECONNRESET, -EALREADY if the body was already partly streamed. Suspends. */
int sp_http_req_body(sp_http_req *req, sp_str *body);

/* Streams the body: the next piece as it arrives (a view valid until the next
 * call), or an empty view at the end. Same errors as sp_http_req_body.
 * Suspends. */
int sp_http_req_read(sp_http_req *req, sp_str *chunk);

/* ---- Responses ----------------------------------------------------------- */

/* Adds a response header (name and value copied). Returns 0, -EINVAL for a
 * name that is not a token, a value holding CR or LF (header injection), or
 * Content-Length / Transfer-Encoding (the server frames the body itself),
 * -EALREADY once the head was sent, -ENOMEM. Never suspends. */
int sp_http_resp_header(sp_http_resp *resp, const char *name, const char *value);

/* Sends a whole response: status, the headers added so far, Content-Type
 * (unless NULL) and Content-Length, and body (borrowed until it returns;
 * omitted for HEAD, and for 1xx, 204 and 304, which carry none). Returns 0,
 * -EALREADY if a response was already sent, -EINVAL for a status outside
 * 100..999 or a content type holding CR or LF, -ECONNRESET/-EPIPE if the client went away,
 * -ETIMEDOUT (write timeout), -ECANCELED. Suspends until the bytes are written. */
int sp_http_resp_send(sp_http_resp *resp, int status, const char *content_type, const void *body,
                      size_t len);

/* sp_http_resp_send with a NUL-terminated body. */
int sp_http_resp_text(sp_http_resp *resp, int status, const char *content_type, const char *body);

/* Sends len bytes of the open file fd from offset as the body (sendfile);
 * fd stays the caller's. Errors as sp_http_resp_send, plus -errno from the
 * file, -EIO if it is shorter than len (the connection then closes), and
 * -ENOTSUP in a blocking handler. Suspends. */
int sp_http_resp_send_file(sp_http_resp *resp, int status, const char *content_type, int fd,
                           off_t offset, size_t len);

/* Starts a streamed response: chunked on HTTP/1.1, close-delimited on
 * HTTP/1.0. Errors as sp_http_resp_send, and -ENOTSUP in a blocking handler.
 * Suspends. */
int sp_http_resp_start(sp_http_resp *resp, int status, const char *content_type);
/* Starts a streamed response whose body is exactly `length` bytes, framed by
 * Content-Length (a proxy passing an upstream's length on; a HEAD answer
 * stating the length a GET would have). Errors as sp_http_resp_start, and
 * -EINVAL for a length over INT64_MAX. Suspends. */
int sp_http_resp_start_length(sp_http_resp *resp, int status, const char *content_type,
                              uint64_t length);
/* Sends one piece of a streamed response (data borrowed until it returns);
 * suspends while the client is slow to read (backpressure). len 0 is a no-op.
 * -EMSGSIZE, with nothing sent, for a piece beyond the length given to
 * sp_http_resp_start_length. */
int sp_http_resp_write(sp_http_resp *resp, const void *data, size_t len);
/* Ends a streamed response. If fewer bytes were written than
 * sp_http_resp_start_length announced, the response cannot be completed:
 * the connection closes (the client sees it cut short) and it returns -EIO.
 * Returning from the handler without calling it ends the stream the same
 * way. Suspends. */
int sp_http_resp_end(sp_http_resp *resp);

/* Server-sent events: starts a text/event-stream response. Suspends. */
int sp_http_sse_start(sp_http_resp *resp);
/* Sends one event (event and id may be NULL; data may hold newlines, sent as
 * several data lines). Suspends. */
int sp_http_sse_send(sp_http_resp *resp, const char *event, const char *data, const char *id);

/* True once the response head has been sent (or buffered to send). */
bool sp_http_resp_started(const sp_http_resp *resp);
/* The status sent (0 before any). */
int sp_http_resp_status(const sp_http_resp *resp);

/* ---- Server ------------------------------------------------------------- */

struct sp_router;

/* The most header fields a request may carry, whatever max_headers says. */
#define SP_HTTP_MAX_HEADERS 128

enum { SP_ACCESS_LOG_OFF = 0, SP_ACCESS_LOG_COMMON = 1, SP_ACCESS_LOG_JSON = 2 };

/* Server settings. sp_http_config_init() fills the defaults (in brackets). */
typedef struct sp_http_config {
    const char *host;        /* address to listen on ["127.0.0.1"] */
    int port;                /* 0: an ephemeral port, see sp_http_server_port [8080] */
    int workers;             /* threads, each with its own loop and listener [cores] */
    int backlog;             /* listen(2) backlog [1024] */
    double header_timeout;   /* seconds to receive a request head [10] */
    double body_timeout;     /* seconds between two pieces of a body [30] */
    double idle_timeout;     /* seconds a keep-alive connection may stay idle [60] */
    double write_timeout;    /* seconds the client may take to accept bytes [30] */
    double drain_timeout;    /* graceful shutdown: seconds to finish requests [10] */
    size_t max_header_bytes; /* request line + headers, else 431 (414 for the target) [16 KiB] */
    size_t max_headers;      /* header count, else 431 [100; at most SP_HTTP_MAX_HEADERS] */
    size_t max_uri;          /* request-target bytes, else 414 [8 KiB] */
    size_t max_body;         /* body bytes, else 413 [1 MiB] */
    size_t max_connections;  /* per worker; above it, accepting pauses [10000] */
    int access_log;          /* SP_ACCESS_LOG_* [off] */
    const char *access_log_path; /* file for the access log; NULL or "-": stdout [NULL] */
    bool handle_signals;         /* sp_http_server_run handles SIGTERM/SIGINT [true] */
    /* Per-worker resources (an HTTP client, a process pool: things that
     * belong to one loop). worker_start runs in each worker's loop, in a task
     * (it may suspend), before the worker accepts; what it stores in *data is
     * what sp_http_req_worker_data() gives that worker's handlers. An error
     * from it stops the server, and sp_http_server_run returns the first one.
     * worker_stop runs in the worker's loop, in a task, after its last
     * connection closed (every request handler has returned; tasks they left
     * running may not have), for each worker whose start succeeded. Both get worker_arg and
     * the worker's index (0..workers-1). [NULL] */
    int (*worker_start)(int worker, void *arg, void **data);
    void (*worker_stop)(int worker, void *arg, void *data);
    void *worker_arg;
} sp_http_config;

/* Fills cfg with the defaults shown in brackets above. Never suspends. */
void sp_http_config_init(sp_http_config *cfg);

typedef struct sp_http_server sp_http_server;

/* Creates a server: validates cfg (copied) and binds every worker's
 * SO_REUSEPORT listener, so the port is known before it runs. With
 * handle_signals it blocks SIGTERM and SIGINT in the calling thread (threads
 * it starts later inherit that), so that one arriving before
 * sp_http_server_run waits for it. router stays the caller's and must outlive
 * the server. Returns 0, -EINVAL for a bad setting, -errno from
 * socket/bind/listen (e.g. -EADDRINUSE). */
int sp_http_server_create(sp_http_server **out, const sp_http_config *cfg,
                          struct sp_router *router);

/* The port the listeners are bound to. */
int sp_http_server_port(const sp_http_server *srv);

/* Runs the workers and blocks the calling thread until the server stops:
 * after sp_http_server_stop, or SIGTERM/SIGINT when handle_signals is set (a
 * second signal forces it). Graceful stop: stop accepting, close idle
 * connections, let requests in flight finish (up to drain_timeout), then
 * return. Returns 0 or -errno. */
int sp_http_server_run(sp_http_server *srv);

/* Asks a running server to stop, gracefully or (force) at once. Safe from any
 * thread and from a signal handler. */
void sp_http_server_stop(sp_http_server *srv, bool force);

/* Frees a server that is not running. */
void sp_http_server_destroy(sp_http_server *srv);

#endif
