/* The HTTP server's private structures: connections, the exchange of one
 * request and its response, workers. Private to http/. */
#ifndef SP_HTTP_INTERNAL_H
#define SP_HTTP_INTERNAL_H

#include <event2/event_struct.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <spindle/http.h>
#include <spindle/router.h>
#include <spindle/task.h>

#include "list.h"
#include "loop.h"
#include "transport.h"

typedef struct sp_http_worker sp_http_worker;
typedef struct sp_http_conn sp_http_conn;

/* A header as offsets into the connection's read buffer, while the head is
 * still being read (the buffer may move), then as views. */
typedef struct sp_http_hdr {
    sp_str name, value;
} sp_http_hdr;

/* Memory a blocking handler's thread allocates for its request (there is no
 * task arena there), freed with the request. */
typedef struct sp_http_block {
    struct sp_http_block *next;
    max_align_t data[];
} sp_http_block;

enum body_state { BODY_NONE, BODY_UNREAD, BODY_STREAMING, BODY_DONE, BODY_FAILED };

struct sp_http_req {
    sp_http_conn *conn;
    sp_str method, target, path, query;
    int version;
    bool keep_alive;
    bool expect_continue;
    bool close_unless_read; /* unless the handler reads the body, the connection closes */
    sp_http_hdr *hdrs;
    size_t nhdrs;
    const sp_route_match *match;
    enum body_state body_state;
    int body_err;
    sp_str body;    /* the whole body once read */
    char *body_buf; /* owned copy when the body came in pieces */
    size_t body_len, body_cap;
    size_t body_seen; /* decoded body bytes so far */
    sp_http_block *blocks;
};

struct sp_http_resp {
    sp_http_conn *conn;
    sp_http_req *req;
    int status;
    bool head_sent;
    bool streaming; /* chunked or close-delimited body in progress */
    bool chunked;
    bool finished;
    bool head_only; /* HEAD: no body bytes */
    bool buffered;  /* a blocking handler's thread: collect bytes, the task sends them */
    char *out;      /* collected bytes while buffered */
    size_t out_len, out_cap;
    char *hdrs; /* extra header lines, "Name: value\r\n"... */
    size_t hdrs_len, hdrs_cap;
    uint64_t body_bytes;
    bool sized;         /* streamed with a Content-Length: ... */
    uint64_t remaining; /* ... and this many bytes still to write */
};

struct sp_http_conn {
    sp_http_worker *w;
    const sp_transport_ops *tp; /* how bytes move: TCP (TLS later) */
    int fd;
    struct event ev;     /* edge-triggered readability, added for the whole life */
    sp_timer idle_timer; /* idle keep-alive (or first request) timeout while no task runs */
    sp_list link;        /* in w->conns */
    sp_task *task;       /* the connection's task while it has one */
    sp_future *read_waiter;
    char *rbuf; /* NULL while idle: an idle connection holds no buffer */
    size_t rlen, rcap;
    bool readable;    /* an edge arrived since the last EAGAIN */
    bool peer_closed; /* an edge reported the peer's FIN (EV_CLOSED) */
    bool in_handler;
    bool closing;
    bool keep_going; /* false once the connection must close after this response */
    socklen_t peer_len;
    struct sockaddr_in6 peer; /* big enough for IPv4 and IPv6 */
};

/* How many idle read buffers a worker keeps for reuse (4 KiB each). */
#define SP_HTTP_SPARE_BUFS 64

struct sp_http_worker {
    struct sp_http_server *srv;
    int index;
    int listen_fd;
    struct event listen_ev;
    bool accepting;
    sp_list conns;
    size_t nconns;
    int stop_fd; /* eventfd: the server asks this worker to stop */
    struct event stop_ev;
    sp_future *stopped; /* completes when the worker may exit */
    int stop_mode;      /* 0 running, 1 graceful, 2 forced */
    sp_timer drain_timer;
    char date[40]; /* "Date: ...\r\n", reformatted once a second */
    size_t date_len;
    int64_t date_sec;
    /* Read buffers given back by connections gone idle, for the next
     * request: a connection holds none between requests. */
    char *spare_bufs[SP_HTTP_SPARE_BUFS];
    int nspare;
    void *data; /* what cfg.worker_start stored */
};

struct sp_http_server {
    sp_http_config cfg;
    char host[64];
    struct sp_router *router;
    sp_http_worker *workers;
    int nworkers;
    int port;
    volatile int stop_requested; /* 0, 1 graceful, 2 forced */
    _Atomic int start_error;     /* the first worker_start failure */
    int exit_fd;                 /* eventfd: each worker adds 1 as it exits */
    bool running;
};

/* Connection lifecycle (conn.c). */
sp_http_conn *sp_http_conn_new(sp_http_worker *w, int fd, const struct sockaddr *peer,
                               socklen_t len);
void sp_http_conn_close(sp_http_conn *c);
/* Graceful stop: idle connections close now, busy ones after their response. */
void sp_http_conn_drain(sp_http_conn *c);
/* Frees the worker's spare read buffers (when its loop has ended). */
void sp_http_worker_free_bufs(sp_http_worker *w);

/* Writing (response.c). */
int sp_http_write_all(sp_http_conn *c, const struct iovec *iov, int iovcnt);
/* Sends a complete error response and marks the connection to close. */
int sp_http_send_error(sp_http_resp *resp, int status, const char *detail);
const char *sp_http_status_text(int status);
/* True if s is a non-empty RFC 9110 token (a valid field name). */
bool sp_http_is_token(sp_str s);
void sp_http_resp_init(sp_http_resp *resp, sp_http_conn *c, sp_http_req *req);
void sp_http_resp_fini(sp_http_resp *resp);

/* Sends what a blocking handler's thread collected (response.c). */
int sp_http_resp_flush_buffered(sp_http_resp *resp);

/* A connection of w closed: resumes accepting, finishes a drain (server.c). */
void sp_http_worker_conn_closed(sp_http_worker *w);

/* Requests (request.c): decodes %XX from in to out (may be in); returns the
 * decoded length, or -EBADMSG for a bad escape or a decoded NUL. */
int sp_http_decode_path(const char *in, size_t len, char *out);
/* Reads the next body piece through the parser (conn.c). */
int sp_http_conn_read_body(sp_http_req *req, sp_str *piece);

#endif
