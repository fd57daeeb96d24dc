/* The connection loop. A connection holds no task and no buffer while it
 * waits for its next request: an edge-triggered read event spawns a task when
 * bytes arrive, the task parses requests with llhttp (pipelined ones in
 * order), runs the router and handler, writes the responses, and ends when the
 * connection goes idle again. The path: accept (server.c) -> conn_readable ->
 * conn_task -> read_head -> llhttp callbacks -> route -> handler -> response. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <spindle/io.h>
#include <spindle/log.h>
#include <spindle/offload.h>

#include "internal.h"
#include "task_impl.h"
#include "text.h"

#define RBUF_MIN    4096
#define DRAIN_MAX   (64 * 1024) /* unread body bytes read and dropped to keep the connection */
#define LINGER_SECS 2.0         /* longest lingering close, see linger() */

typedef struct span {
    uint32_t off, len;
} span;

/* One request and its response, on the connection task's stack. */
typedef struct exchange {
    llhttp_t parser;
    sp_http_req req;
    sp_http_resp resp;
    sp_route_match match;
    sp_http_conn *conn;
    size_t ppos;     /* rbuf bytes fed to the parser */
    size_t head_end; /* rbuf bytes of the head (fixed once it is complete) */
    span url;
    span method;      /* an extension method's token, see settle_method() */
    bool method_done; /* the method is parsed or left to llhttp */
    span names[SP_HTTP_MAX_HEADERS], values[SP_HTTP_MAX_HEADERS];
    size_t nhdrs;
    bool field_done; /* the current header's name is complete */
    bool head_done, msg_done;
    int err_status; /* set by a callback that stops the parser */
    const char *err_detail;
    sp_str *pieces; /* body pieces the parser produced, not yet handed out */
    size_t npieces, piece_next, pieces_cap;
    sp_http_hdr hdrs[SP_HTTP_MAX_HEADERS];
} exchange;

static llhttp_settings_t g_settings;
static pthread_once_t g_settings_once = PTHREAD_ONCE_INIT;

static exchange *ex_of(llhttp_t *p) {
    return p->data;
}

static void span_add(exchange *ex, span *s, const char *at, size_t len) {
    uint32_t off = (uint32_t)(at - ex->conn->rbuf);
    if (s->len == 0)
        s->off = off;
    s->len += (uint32_t)len;
}

static int stop_with(exchange *ex, int status, const char *detail) {
    ex->err_status = status;
    ex->err_detail = detail;
    return -1;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
    exchange *ex = ex_of(p);
    span_add(ex, &ex->url, at, len);
    if (ex->url.len > ex->conn->w->srv->cfg.max_uri)
        return stop_with(ex, 414, NULL);
    return 0;
}

/* A request line ending right after its target ("GET /", HTTP/0.9) lacks
 * the version RFC 9112 3 requires. llhttp would read header lines after it,
 * while such a client waits for its answer: refuse it now. The byte that
 * ended the target is in the buffer. */
static int on_url_complete(llhttp_t *p) {
    exchange *ex = ex_of(p);
    char next = ex->conn->rbuf[ex->url.off + ex->url.len];
    if (next == '\r' || next == '\n')
        return stop_with(ex, 400, "no HTTP version in the request line");
    return 0;
}

/* Trailer fields of a chunked body are parsed and dropped; their bytes count
 * toward the body limit, so an endless trailer section ends as a long body does. */
static int trailer_bytes(exchange *ex, size_t len) {
    ex->req.body_seen += len;
    if (ex->req.body_seen > ex->conn->w->srv->cfg.max_body)
        return stop_with(ex, 413, NULL);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
    exchange *ex = ex_of(p);
    if (ex->head_done)
        return trailer_bytes(ex, len);
    if (ex->field_done) {
        ex->nhdrs++;
        ex->field_done = false;
    }
    if (ex->nhdrs >= ex->conn->w->srv->cfg.max_headers || ex->nhdrs >= SP_HTTP_MAX_HEADERS)
        return stop_with(ex, 431, "too many header fields");
    if (ex->names[ex->nhdrs].len == 0)
        ex->values[ex->nhdrs] = (span){0, 0};
    span_add(ex, &ex->names[ex->nhdrs], at, len);
    return 0;
}

static int on_header_field_complete(llhttp_t *p) {
    (void)p;
    return 0;
}

/* Whether the field line being parsed had a name: llhttp takes ": v" as a
 * field with an empty one (no on_header_field call), where RFC 9110 5.1
 * requires a token. */
static bool named(const exchange *ex) {
    return !ex->field_done && ex->names[ex->nhdrs].len > 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
    exchange *ex = ex_of(p);
    if (ex->head_done)
        return trailer_bytes(ex, len);
    if (len == 0)
        return 0; /* an empty value, reported where the next line starts */
    if (!named(ex))
        return stop_with(ex, 400, "header field without a name");
    /* The pieces of a value follow its colon and each other in rbuf, with only
     * whitespace between. A line break there is an obs-fold, which llhttp
     * accepts and would splice into the value: refuse it (RFC 9112 5.2). */
    span *v = &ex->values[ex->nhdrs], *n = &ex->names[ex->nhdrs];
    const char *from = ex->conn->rbuf + (v->len ? v->off + v->len : n->off + n->len + 1);
    if (memchr(from, '\n', (size_t)(at - from)))
        return stop_with(ex, 400, "obsolete line folding");
    span_add(ex, v, at, len);
    return 0;
}

static int on_header_value_complete(llhttp_t *p) {
    exchange *ex = ex_of(p);
    if (ex->head_done)
        return 0;
    if (!named(ex))
        return stop_with(ex, 400, "header field without a name");
    /* The next field starts a new header (an empty value gets no callback). */
    ex->field_done = true;
    return 0;
}

static int on_headers_complete(llhttp_t *p) {
    exchange *ex = ex_of(p);
    if (ex->field_done) {
        ex->nhdrs++;
        ex->field_done = false;
    }
    ex->head_done = true;
    /* No other protocol is offered: an Upgrade request is served as a plain
     * one, and the bytes after it are the next request (RFC 9110 7.8). */
    p->upgrade = 0;
    /* Stop here: the body waits until the handler asks for it. */
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
    exchange *ex = ex_of(p);
    sp_http_req *req = &ex->req;
    /* llhttp reports an open body span at the end of every execute, even an
     * empty one: an empty piece would read as the end of the body. */
    if (len == 0)
        return 0;
    req->body_seen += len;
    if (req->body_seen > ex->conn->w->srv->cfg.max_body)
        return stop_with(ex, 413, NULL);
    if (ex->npieces == ex->pieces_cap) {
        size_t cap = ex->pieces_cap ? ex->pieces_cap * 2 : 16;
        sp_str *n = realloc(ex->pieces, cap * sizeof(*n));
        if (!n)
            return stop_with(ex, 500, "out of memory");
        ex->pieces = n;
        ex->pieces_cap = cap;
    }
    ex->pieces[ex->npieces++] = (sp_str){at, len};
    return 0;
}

static int on_message_complete(llhttp_t *p) {
    ex_of(p)->msg_done = true;
    /* Leave the next pipelined request in the buffer for the next round. */
    return HPE_PAUSED;
}

static void settings_init(void) {
    llhttp_settings_init(&g_settings);
    g_settings.on_url = on_url;
    g_settings.on_url_complete = on_url_complete;
    g_settings.on_header_field = on_header_field;
    g_settings.on_header_field_complete = on_header_field_complete;
    g_settings.on_header_value = on_header_value;
    g_settings.on_header_value_complete = on_header_value_complete;
    g_settings.on_headers_complete = on_headers_complete;
    g_settings.on_body = on_body;
    g_settings.on_message_complete = on_message_complete;
}

/* Any digit pair passes llhttp as a version: validate() answers 505 for a
 * major version other than 1 and serves a higher 1.x as 1.1 (RFC 9110 2.5),
 * where llhttp would refuse both with 400. */
static void parser_init(llhttp_t *p) {
    llhttp_init(p, HTTP_REQUEST, &g_settings);
    p->lenient_flags |= LENIENT_VERSION;
}

/* The methods llhttp parses (HTTP_METHOD_MAP); it refuses any other token. */
static const sp_str parsed_methods[] = {
#define XX(num, name, string) {#string, sizeof(#string) - 1},
    HTTP_METHOD_MAP(XX)
#undef XX
};

static bool llhttp_knows(sp_str m) {
    for (size_t i = 0; i < sizeof(parsed_methods) / sizeof(parsed_methods[0]); i++)
        if (sp_str_eq(parsed_methods[i], m))
            return true;
    return false;
}

/* A method is any token (RFC 9110 9.1), one the router may route, or else
 * answer 405 or 404 (nginx answers 405 too); llhttp knows a fixed list. Once
 * the token is in the buffer, one llhttp does not know is replaced for the
 * parser by "GET" (a request's framing does not depend on its method) and
 * kept in ex->method. Returns false while the token may be incomplete. */
static bool settle_method(exchange *ex) {
    if (ex->method_done)
        return true;
    sp_http_conn *c = ex->conn;
    const char *b = c->rbuf;
    size_t i = ex->ppos;
    while (i < c->rlen && (b[i] == '\r' || b[i] == '\n'))
        i++; /* empty lines before a request, which llhttp skips (RFC 9112 2.2) */
    size_t start = i;
    while (i < c->rlen && sp_http_tchar[(unsigned char)b[i]])
        i++;
    if (i == c->rlen)
        return false;
    ex->method_done = true;
    /* Anything but a token and a space is left to llhttp, which refuses it. */
    if (b[i] != ' ' || i == start || llhttp_knows((sp_str){b + start, i - start}))
        return true;
    if (llhttp_execute(&ex->parser, b + ex->ppos, start - ex->ppos) != HPE_OK)
        return true; /* feed() reports the error */
    llhttp_execute(&ex->parser, "GET", 3);
    ex->method = (span){(uint32_t)start, (uint32_t)(i - start)};
    ex->ppos = i;
    return true;
}

/* ---- Reading ------------------------------------------------------------ */

/* Waits for the next edge of readability, at most until deadline (ns). */
static int wait_readable(sp_http_conn *c, int64_t deadline) {
    if (c->readable)
        return 0;
    sp_future fut;
    sp_future_init(&fut);
    c->read_waiter = &fut;
    int rc = sp_future_await_deadline(&fut, deadline, -ETIMEDOUT);
    c->read_waiter = NULL;
    sp_future_fini(&fut);
    return rc;
}

/* Makes room at the end of rbuf. Before the head is complete the buffer may
 * grow (it holds only offsets then); after, parsed body bytes are dropped so
 * that the head's views stay put. */
static int make_room(sp_http_conn *c, exchange *ex) {
    if (c->rlen < c->rcap)
        return 0;
    if (ex && ex->head_done && ex->ppos > ex->head_end && ex->piece_next == ex->npieces) {
        memmove(c->rbuf + ex->head_end, c->rbuf + ex->ppos, c->rlen - ex->ppos);
        c->rlen -= ex->ppos - ex->head_end;
        ex->ppos = ex->head_end;
        ex->npieces = ex->piece_next = 0;
        if (c->rlen < c->rcap)
            return 0;
    }
    if (ex && ex->head_done)
        return -ENOBUFS;
    sp_http_worker *w = c->w;
    if (!c->rcap && w->nspare > 0) {
        c->rbuf = w->spare_bufs[--w->nspare];
        c->rcap = RBUF_MIN;
        return 0;
    }
    size_t cap = c->rcap ? c->rcap * 2 : RBUF_MIN;
    char *n = realloc(c->rbuf, cap);
    if (!n)
        return -ENOMEM;
    c->rbuf = n;
    c->rcap = cap;
    return 0;
}

/* Reads what the socket has into rbuf, waiting up to deadline (0: not at all,
 * -EAGAIN). Returns the byte count, 0 at end of stream, or -ETIMEDOUT,
 * -ECONNRESET, -ECANCELED. */
static ssize_t fill(sp_http_conn *c, exchange *ex, int64_t deadline) {
    int rc = make_room(c, ex);
    if (rc != 0)
        return rc;
    for (;;) {
        ssize_t n = c->tp->read(c, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n >= 0) {
            /* A short read drained the socket: the next bytes bring a new
             * edge, so there is no need to read on until EAGAIN. */
            if ((size_t)n < c->rcap - c->rlen && c->tp->short_read_drains)
                c->readable = false;
            c->rlen += (size_t)n;
            return n;
        }
        if (n == SP_TP_WANT_WRITE) {
            rc = sp_io_wait(c->fd, SP_IO_WRITE, (double)(deadline - sp_now_ns()) / 1e9);
            if (rc != 0)
                return rc;
            continue;
        }
        if (n != SP_TP_AGAIN && n != SP_TP_WANT_READ)
            return -ECONNRESET;
        c->readable = false;
        if (deadline == 0)
            return -EAGAIN;
        rc = wait_readable(c, deadline);
        if (rc != 0)
            return rc;
    }
}

/* Feeds the parser what it has not seen. Returns 0, or -EBADMSG with
 * ex->err_status set. */
static int feed(exchange *ex) {
    sp_http_conn *c = ex->conn;
    /* With nothing new, the parser still runs once after the head: a message
     * without a body completes without input. */
    if (ex->ppos == c->rlen && (!ex->head_done || ex->msg_done))
        return 0;
    const char *start = c->rbuf + ex->ppos;
    llhttp_errno_t e = llhttp_execute(&ex->parser, start, c->rlen - ex->ppos);
    if (e == HPE_OK) {
        ex->ppos = c->rlen;
        return 0;
    }
    if (e == HPE_PAUSED) {
        ex->ppos = (size_t)(llhttp_get_error_pos(&ex->parser) - c->rbuf);
        llhttp_resume(&ex->parser);
        return 0;
    }
    if (!ex->err_status) {
        ex->err_status = 400;
        ex->err_detail = llhttp_get_error_reason(&ex->parser);
    }
    return -EBADMSG;
}

/* Reads and parses one request head. Returns 0, 1 when the client closed
 * the connection cleanly before a new request, or an error (err_status set
 * when a response is due). */
static int read_head(exchange *ex, int64_t deadline) {
    sp_http_conn *c = ex->conn;
    size_t max_head = c->w->srv->cfg.max_header_bytes;
    for (;;) {
        int rc = settle_method(ex) ? feed(ex) : 0;
        if (rc != 0)
            return rc;
        /* The whole head may have come in one read: check its size either way
         * (an unsettled method has not been fed yet). */
        if ((ex->method_done ? ex->ppos : c->rlen) > max_head) {
            ex->err_status = ex->url.len && !ex->nhdrs && !ex->names[0].len ? 414 : 431;
            return -EBADMSG;
        }
        if (ex->head_done) {
            ex->head_end = ex->ppos;
            /* The head's views are taken next and must stay put: leave room
             * behind it for the body. */
            if (ex->head_end == c->rcap)
                return make_room(c, NULL);
            return 0;
        }
        ssize_t n = fill(c, ex, deadline);
        if (n == 0) {
            if (c->rlen == 0)
                return 1;
            c->keep_going = false;
            return -ECONNRESET; /* cut off mid-head: nobody to answer */
        }
        if (n == -ETIMEDOUT) {
            if (c->rlen == 0)
                return 1;
            ex->err_status = 408;
            return -ETIMEDOUT;
        }
        if (n < 0)
            return (int)n;
    }
}

/* ---- Body ---------------------------------------------------------------- */

int sp_http_conn_read_body(sp_http_req *req, sp_str *piece) {
    sp_http_conn *c = req->conn;
    exchange *ex = sp_container_of(req, exchange, req);
    if (req->body_state == BODY_FAILED)
        return req->body_err;
    if (req->expect_continue && !ex->resp.head_sent) {
        req->expect_continue = false;
        struct iovec iov = {"HTTP/1.1 100 Continue\r\n\r\n", 25};
        int rc = sp_http_write_all(c, &iov, 1);
        if (rc != 0)
            return rc;
    }
    double body_timeout = c->w->srv->cfg.body_timeout;
    for (;;) {
        if (ex->piece_next < ex->npieces) {
            *piece = ex->pieces[ex->piece_next++];
            return 0;
        }
        if (ex->msg_done) {
            req->body_state = BODY_DONE;
            *piece = (sp_str){"", 0};
            return 0;
        }
        ex->npieces = ex->piece_next = 0;
        int rc = feed(ex);
        if (rc == 0 && (ex->npieces || ex->msg_done))
            continue;
        ssize_t n = rc ? rc : fill(c, ex, sp_deadline_after(body_timeout));
        if (n > 0)
            continue;
        if (n == 0)
            n = -ECONNRESET;
        if (ex->err_status == 413)
            n = -EMSGSIZE;
        else if (ex->err_status)
            n = -EBADMSG;
        c->keep_going = false;
        req->body_state = BODY_FAILED;
        req->body_err = (int)n;
        return (int)n;
    }
}

int sp_http_req_read(sp_http_req *req, sp_str *chunk) {
    if (req->body_state == BODY_DONE) {
        *chunk = (sp_str){"", 0};
        return 0;
    }
    req->body_state = req->body_state == BODY_FAILED ? BODY_FAILED : BODY_STREAMING;
    return sp_http_conn_read_body(req, chunk);
}

static int body_append(sp_http_req *req, sp_str piece) {
    size_t need = req->body_len + piece.len;
    if (need > req->body_cap) {
        size_t cap = req->body_cap ? req->body_cap : 4096;
        while (cap < need)
            cap *= 2;
        char *n = realloc(req->body_buf, cap);
        if (!n)
            return -ENOMEM;
        req->body_buf = n;
        req->body_cap = cap;
    }
    memcpy(req->body_buf + req->body_len, piece.ptr, piece.len);
    req->body_len += piece.len;
    return 0;
}

int sp_http_req_body(sp_http_req *req, sp_str *body) {
    exchange *ex = sp_container_of(req, exchange, req);
    if (req->body_state == BODY_DONE && req->body.ptr) {
        *body = req->body;
        return 0;
    }
    if (req->body_state == BODY_STREAMING || (req->body_state == BODY_DONE && !req->body.ptr))
        return -EALREADY;
    sp_str first = {NULL, 0};
    for (;;) {
        sp_str piece;
        int rc = sp_http_conn_read_body(req, &piece);
        if (rc != 0)
            return rc;
        if (piece.len == 0)
            break;
        /* One piece (the usual case) is handed out as a view, without a copy;
         * but only while the next read cannot move the buffer under it, i.e.
         * when the parser already holds the rest of the body. */
        if (!first.ptr && !req->body_buf && (ex->msg_done || ex->piece_next < ex->npieces)) {
            first = piece;
            continue;
        }
        if (first.ptr) {
            rc = body_append(req, first);
            first = (sp_str){NULL, 0};
        }
        if (rc == 0)
            rc = body_append(req, piece);
        if (rc != 0)
            return rc;
    }
    req->body = req->body_buf ? (sp_str){req->body_buf, req->body_len}
                              : (first.ptr ? first : (sp_str){"", 0});
    *body = req->body;
    return 0;
}

/* After the handler: reads and drops a small unread body so the connection
 * can serve the next request; a large one closes the connection instead. */
static void finish_body(exchange *ex) {
    sp_http_req *req = &ex->req;
    sp_http_conn *c = ex->conn;
    if (ex->msg_done || !c->keep_going)
        return;
    if (req->expect_continue) {
        /* We never asked for the body: the client may not send it. */
        c->keep_going = false;
        return;
    }
    uint64_t left = ex->parser.content_length;
    if ((ex->parser.flags & F_CONTENT_LENGTH) && left > DRAIN_MAX) {
        c->keep_going = false;
        return;
    }
    size_t dropped = 0;
    while (!ex->msg_done && c->keep_going) {
        sp_str piece;
        if (sp_http_conn_read_body(req, &piece) != 0 || (dropped += piece.len) > DRAIN_MAX)
            c->keep_going = false;
        else if (piece.len == 0)
            break;
    }
}

/* ---- Dispatch ------------------------------------------------------------ */

static void build_request(exchange *ex) {
    sp_http_conn *c = ex->conn;
    sp_http_req *req = &ex->req;
    const char *b = c->rbuf;
    req->conn = c;
    req->method = ex->method.len ? (sp_str){b + ex->method.off, ex->method.len}
                                 : sp_str_c(llhttp_method_name((llhttp_method_t)ex->parser.method));
    req->target = (sp_str){b + ex->url.off, ex->url.len};
    /* A higher HTTP/1.x is served as 1.1 (RFC 9110 2.5). */
    int major = ex->parser.http_major, minor = ex->parser.http_minor;
    req->version = major == 1 && minor > 1 ? 11 : major * 10 + minor;
    req->keep_alive = llhttp_should_keep_alive(&ex->parser);
    ex->resp.head_only = ex->parser.method == HTTP_HEAD;
    req->hdrs = ex->hdrs;
    req->nhdrs = ex->nhdrs;
    for (size_t i = 0; i < ex->nhdrs; i++) {
        /* A field value excludes the whitespace around it (RFC 9110 5.5);
         * llhttp leaves tabs before it and any whitespace after it. */
        const char *v = b + ex->values[i].off;
        size_t vlen = ex->values[i].len;
        while (vlen && (*v == ' ' || *v == '\t'))
            v++, vlen--;
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        ex->hdrs[i].name = (sp_str){b + ex->names[i].off, ex->names[i].len};
        ex->hdrs[i].value = (sp_str){v, vlen};
    }
}

/* RFC 3986 unreserved and sub-delims: the bytes of a reg-name besides %XX. */
static bool host_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("-._~!$&'()*+,;=", ch));
}

static bool is_hex(char ch) {
    return (ch >= '0' && ch <= '9') || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f');
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2): an IP-literal in brackets or
 * a reg-name, which may be empty, and a port of digits. */
static bool valid_host(sp_str h) {
    const char *p = h.ptr, *end = p + h.len;
    if (p < end && *p == '[') {
        const char *close = memchr(p, ']', h.len);
        if (!close || close == p + 1)
            return false;
        for (p++; p < close; p++)
            if (!host_char(*p) && *p != ':')
                return false;
        p++;
    } else {
        for (; p < end && *p != ':'; p++) {
            if (*p == '%' && end - p > 2 && is_hex(p[1]) && is_hex(p[2]))
                p += 2;
            else if (!host_char(*p))
                return false;
        }
    }
    if (p < end && *p++ != ':')
        return false;
    for (; p < end; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* The next member of the comma-separated list at *p (before end), without
 * its surrounding whitespace; empty members are returned too (RFC 9110 5.6.1
 * allows them). False when the list is done. */
static bool list_next(const char **p, const char *end, sp_str *item) {
    if (*p >= end)
        return false;
    const char *comma = memchr(*p, ',', (size_t)(end - *p));
    const char *s = *p, *e = comma ? comma : end;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *item = (sp_str){s, (size_t)(e - s)};
    *p = comma ? comma + 1 : end;
    return true;
}

/* True if the list v holds the token `want` (any case). */
static bool list_has(sp_str v, sp_str want) {
    const char *p = v.ptr;
    sp_str item;
    while (list_next(&p, v.ptr + v.len, &item))
        if (sp_str_eq_case(item, want))
            return true;
    return false;
}

/* True if every coding a Transfer-Encoding line lists is chunked. */
static bool only_chunked(sp_str v) {
    const char *p = v.ptr;
    sp_str item;
    while (list_next(&p, v.ptr + v.len, &item))
        if (item.len && !sp_str_eq_case(item, sp_str_c("chunked")))
            return false;
    return true;
}

/* Checks what llhttp leaves to us; returns an error status or 0. */
static int validate(exchange *ex, const char **detail) {
    sp_http_req *req = &ex->req;
    size_t hosts = 0;
    bool host_ok = true, coding_ok = true, expect_100 = false;
    for (size_t i = 0; i < req->nhdrs; i++) {
        sp_str n = req->hdrs[i].name, v = req->hdrs[i].value;
        if (!sp_http_is_token(n)) {
            /* "Host : x" must not pass as a header named "Host " (RFC 9112 5.1). */
            *detail = "invalid header field name";
            return 400;
        }
        if (sp_str_eq_case(n, sp_str_c("host"))) {
            hosts++;
            host_ok = host_ok && valid_host(v);
        } else if (sp_str_eq_case(n, sp_str_c("transfer-encoding"))) {
            coding_ok = coding_ok && only_chunked(v);
        } else if (sp_str_eq_case(n, sp_str_c("expect"))) {
            /* Other expectations are ignored, as nginx does: RFC 9110 10.1.1
             * lets a server answer them with 417 or not. */
            expect_100 = expect_100 || list_has(v, sp_str_c("100-continue"));
        }
    }
    if (ex->parser.http_major != 1) {
        *detail = "only HTTP/1.0 and HTTP/1.1 are served";
        return 505;
    }
    /* RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
    if ((ex->parser.flags & F_TRANSFER_ENCODING) && req->version < 11) {
        *detail = "Transfer-Encoding in an HTTP/1.0 request";
        return 400;
    }
    /* llhttp accepts a bare LF ending the request line or the head, though not
     * one ending a header line: refuse those too, so that no two parsers can
     * disagree on where this head ends. */
    const char *b = ex->conn->rbuf, *url_end = b + ex->url.off + ex->url.len;
    const char *rl_end = memchr(url_end, '\n', (size_t)(b + ex->head_end - url_end));
    if (!rl_end || rl_end[-1] != '\r' || ex->head_end < 4 ||
        memcmp(b + ex->head_end - 4, "\r\n\r\n", 4) != 0) {
        *detail = "line not ending in CRLF";
        return 400;
    }
    if (hosts > 1 || (hosts == 0 && req->version >= 11)) {
        *detail = hosts ? "more than one Host header" : "missing Host header";
        return 400;
    }
    if (!host_ok) {
        *detail = "invalid Host header"; /* a MUST of RFC 9112 3.2 */
        return 400;
    }
    /* Without chunked last the body has no length: llhttp would only fail
     * when the body is read, after the handler started (RFC 9112 6.3: 400). */
    if ((ex->parser.flags & F_TRANSFER_ENCODING) && !(ex->parser.flags & F_CHUNKED)) {
        *detail = "Transfer-Encoding not ending in chunked";
        return 400;
    }
    /* A coding before chunked is one the server cannot undo (RFC 9112 6.1). */
    if (!coding_ok) {
        *detail = "unsupported transfer coding";
        return 501;
    }
    /* 100 (Continue) asks for content: without any, the expectation is
     * moot and must not cost the connection (RFC 9110 10.1.1). An HTTP/1.0
     * client's is ignored. */
    bool has_body = (ex->parser.flags & F_CHUNKED) ||
                    ((ex->parser.flags & F_CONTENT_LENGTH) && ex->parser.content_length > 0);
    req->expect_continue = expect_100 && has_body && req->version >= 11;
    if ((ex->parser.flags & F_CONTENT_LENGTH) &&
        ex->parser.content_length > ex->conn->w->srv->cfg.max_body)
        return 413;
    /* A body the handler leaves unread is dropped only when small and sent
     * unasked: otherwise its response announces the close (finish_body). */
    req->close_unless_read = req->expect_continue || ((ex->parser.flags & F_CONTENT_LENGTH) &&
                                                      ex->parser.content_length > DRAIN_MAX);
    /* Split the target into a decoded path and the raw query. */
    const char *t = req->target.ptr;
    size_t tlen = req->target.len;
    if (tlen == 1 && t[0] == '*') {
        /* The asterisk-form names the server itself, for OPTIONS only
         * (RFC 9112 3.2.4); dispatch() answers it. */
        if (!sp_str_eq(req->method, sp_str_c("OPTIONS"))) {
            *detail = "asterisk-form target outside OPTIONS";
            return 400;
        }
        req->path = req->target;
        req->query = (sp_str){"", 0};
        return 0;
    }
    /* A fragment has no place in a request-target (RFC 9112 3.2): ignored,
     * as nginx does, rather than routed as part of the path. */
    const char *hash = memchr(t, '#', tlen);
    if (hash)
        tlen = (size_t)(hash - t);
    if (tlen == 0 || t[0] != '/') {
        /* absolute-form: keep the path part */
        const char *s = memchr(t, '/', tlen);
        const char *scheme = tlen > 3 ? memchr(t, ':', tlen) : NULL;
        if (!scheme || !s || scheme[1] != '/' || scheme[2] != '/') {
            *detail = "bad request-target";
            return 400;
        }
        s = memchr(scheme + 3, '/', tlen - (size_t)(scheme + 3 - t));
        if (!s)
            s = t + tlen;
        tlen -= (size_t)(s - t);
        t = s;
    }
    const char *q = memchr(t, '?', tlen);
    size_t plen = q ? (size_t)(q - t) : tlen;
    req->query = q ? (sp_str){q + 1, tlen - plen - 1} : (sp_str){"", 0};
    char *path = sp_task_alloc(plen + 2);
    if (!path)
        return 500;
    int n = plen ? sp_http_decode_path(t, plen, path) : 0;
    if (n < 0) {
        *detail = "bad percent-encoding in path";
        return 400;
    }
    if (n == 0)
        path[n++] = '/';
    path[n] = '\0';
    req->path = (sp_str){path, (size_t)n};
    return 0;
}

/* 404 and 405 are answers, not errors: the connection stays open. */
static int not_found(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    char body[64];
    int n = snprintf(body, sizeof(body), "404 %s\n", sp_http_status_text(404));
    return sp_http_resp_send(resp, 404, "text/plain; charset=utf-8", body, (size_t)n);
}

static int not_allowed(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    char allow[1024];
    if (sp_router_allow(req->match, allow, sizeof(allow)) > 0)
        sp_http_resp_header(resp, "Allow", allow);
    char body[64];
    int n = snprintf(body, sizeof(body), "405 %s\n", sp_http_status_text(405));
    return sp_http_resp_send(resp, 405, "text/plain; charset=utf-8", body, (size_t)n);
}

/* OPTIONS * asks about the server itself, a "ping" (RFC 9110 9.3.7). */
static int server_options(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, NULL, "", 0);
}

/* A route flagged SP_ROUTE_BLOCKING runs its handler on a to_thread worker. */
typedef struct blocking_call {
    sp_http_handler *handler;
    void *arg;
    sp_http_req *req;
    sp_http_resp *resp;
    bool returned;     /* the abandoned handler has returned */
    sp_future *waiter; /* the connection task, waiting for that */
} blocking_call;

/* Runs on the loop once the handler of a call abandoned by a cancel returned. */
static void blocking_discard(void *arg, void *result) {
    (void)result;
    blocking_call *bc = arg;
    bc->returned = true;
    if (bc->waiter && bc->waiter->state == SP_FUT_PENDING)
        sp_future_set_result(bc->waiter, NULL);
}

static int blocking_thread(void *arg, void **result) {
    (void)result;
    blocking_call *bc = arg;
    return bc->handler(bc->req, bc->resp, bc->arg);
}

static int run_blocking(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    /* The thread cannot suspend: read the body before it starts. */
    sp_str body;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc;
    blocking_call bc = {req->match->handler, req->match->arg, req, resp, false, NULL};
    resp->buffered = true;
    rc = sp_to_thread(blocking_thread, &bc, blocking_discard, NULL);
    /* A running thread cannot be stopped: cancelled, sp_to_thread returns at
     * once while the handler still uses req, resp and bc, which live in this
     * task. Wait for it to return, whatever other cancellations come. */
    while (rc == -ECANCELED && !bc.returned) {
        sp_future f;
        sp_future_init(&f);
        bc.waiter = &f;
        sp_future_await(&f, NULL);
        bc.waiter = NULL;
        sp_future_fini(&f);
    }
    resp->buffered = false;
    if (rc == -ECANCELED)
        return rc;
    int wrc = sp_http_resp_flush_buffered(resp);
    return rc != 0 ? rc : wrc;
}

static int status_for(int err) {
    switch (err) {
    case -EMSGSIZE:
        return 413;
    case -ETIMEDOUT:
        return 408;
    case -EBADMSG:
        return 400;
    default:
        return 500;
    }
}

static void dispatch(exchange *ex) {
    sp_http_conn *c = ex->conn;
    sp_http_req *req = &ex->req;
    sp_http_resp *resp = &ex->resp;
    int rc = sp_router_match(c->w->srv->router, req->method, req->path, &ex->match);
    req->match = &ex->match;
    sp_http_handler *h = ex->match.handler;
    void *harg = ex->match.arg;
    if (rc == -ENOENT)
        h = req->path.ptr[0] == '*' ? server_options : not_found;
    else if (rc == -EOPNOTSUPP)
        h = not_allowed;
    else if (ex->match.flags & SP_ROUTE_BLOCKING)
        h = run_blocking;
    c->in_handler = true;
    rc = sp_router_dispatch(&ex->match, h, harg, req, resp);
    c->in_handler = false;

    if (rc == 0 && !resp->head_sent) {
        sp_log_warn("route '%s' (task '%s') returned without a response", sp_http_req_route(req),
                    sp_task_name(sp_task_current()));
        sp_http_send_error(resp, 500, NULL);
    } else if (rc == 0 && resp->streaming && !resp->finished) {
        if (sp_http_resp_end(resp) == -EIO)
            sp_log_warn("route '%s' (task '%s') returned %llu bytes short of its Content-Length; "
                        "connection closed",
                        sp_http_req_route(req), sp_task_name(sp_task_current()),
                        (unsigned long long)resp->remaining);
    } else if (rc != 0) {
        c->keep_going = false;
        if (rc == -ECANCELED || rc == -ECONNRESET || rc == -EPIPE)
            return; /* the client is gone, or we are shutting down */
        /* A handler's sp_fail message is in the connection task's pending
         * message: log it with the error, then drop it with the request. */
        sp_task *self = sp_task_current();
        const char *msg = self->pending_msg;
        if (rc != -EMSGSIZE && rc != -ETIMEDOUT && rc != -EBADMSG) /* the client's doing */
            sp_log_warn("route '%s' (task '%s') failed: %s%s%s", sp_http_req_route(req),
                        sp_task_name(self), strerror(-rc), msg ? ": " : "", msg ? msg : "");
        free(self->pending_msg);
        self->pending_msg = NULL;
        if (!resp->head_sent)
            sp_http_send_error(resp, status_for(rc), NULL);
    }
}

/* ---- The connection task -------------------------------------------------- */

static void exchange_init(exchange *ex, sp_http_conn *c, const llhttp_t *parser) {
    memset(ex, 0, offsetof(exchange, hdrs));
    ex->conn = c;
    if (parser) {
        ex->parser = *parser;
    } else {
        parser_init(&ex->parser);
    }
    ex->parser.data = ex;
    sp_http_resp_init(&ex->resp, c, &ex->req);
}

static void exchange_fini(exchange *ex) {
    while (ex->req.blocks) {
        sp_http_block *b = ex->req.blocks;
        ex->req.blocks = b->next;
        free(b);
    }
    sp_http_resp_fini(&ex->resp);
    free(ex->req.body_buf);
    free(ex->pieces);
}

/* Moves the bytes after this request (the next pipelined one) to the start. */
static void consume(sp_http_conn *c, exchange *ex) {
    memmove(c->rbuf, c->rbuf + ex->ppos, c->rlen - ex->ppos);
    c->rlen -= ex->ppos;
}

/* Closing a socket that holds unread bytes sends a reset, which may destroy
 * the response still on its way, or fail the client's send before it reads
 * the response. So, as nginx's lingering close: send our FIN, then read and
 * drop what the client still sends until it closes, LINGER_SECS at most. */
static void linger(sp_http_conn *c) {
    if (c->w->stop_mode == 2 || c->tp->shutdown_write(c) != 0)
        return;
    int64_t deadline = sp_deadline_after(LINGER_SECS);
    do
        c->rlen = 0;
    while (fill(c, NULL, deadline) > 0);
}

/* One access log line per answered request (nginx's log phase). */
static void log_access(exchange *ex, int64_t start_ns) {
    sp_http_req *req = &ex->req;
    if (!ex->resp.status || !sp_log_access_enabled())
        return;
    sp_access_entry e = {.peer = (const struct sockaddr *)&ex->conn->peer,
                         .method = req->method,
                         .target = req->target,
                         .proto = sp_str_c(req->version == 10 ? "HTTP/1.0" : "HTTP/1.1"),
                         .status = ex->resp.status,
                         .bytes = ex->resp.body_bytes,
                         .duration = (double)(sp_now_ns() - start_ns) / 1e9};
    if (sp_http_req_header(req, "Referer", &e.referer) != 0)
        e.referer.ptr = NULL;
    if (sp_http_req_header(req, "User-Agent", &e.user_agent) != 0)
        e.user_agent.ptr = NULL;
    if (!req->method.ptr)
        e.method = sp_str_c("-");
    sp_log_access(&e);
}

/* Answers a request the server refuses (400, 408, 413, 414, 431, ...) and
 * says why in the error log, as nginx does at the info level. */
static void reject(exchange *ex, int status, const char *detail) {
    char addr[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr *sa = (const struct sockaddr *)&ex->conn->peer;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
    sp_log(SP_LOG_INFO, "client %s: %d %s%s%s", addr, status, sp_http_status_text(status),
           detail ? ": " : "", detail ? detail : "");
    sp_http_send_error(&ex->resp, status, detail);
}

/* Gives the read buffer back: to the worker's spares if it has its first
 * size and there is room, else to malloc. */
static void buf_release(sp_http_conn *c) {
    sp_http_worker *w = c->w;
    if (c->rcap == RBUF_MIN && w->nspare < SP_HTTP_SPARE_BUFS)
        w->spare_bufs[w->nspare++] = c->rbuf;
    else
        free(c->rbuf);
    c->rbuf = NULL;
    c->rlen = c->rcap = 0;
}

void sp_http_worker_free_bufs(sp_http_worker *w) {
    while (w->nspare > 0)
        free(w->spare_bufs[--w->nspare]);
}

static void conn_go_idle(sp_http_conn *c) {
    buf_release(c);
    sp_loop *loop = sp_loop_get();
    sp_timer_arm(loop, &c->idle_timer, sp_loop_deadline_after(loop, c->w->srv->cfg.idle_timeout));
}

static int conn_task(void *arg, void **result) {
    (void)result;
    sp_http_conn *c = arg;
    llhttp_t parser;
    parser_init(&parser);
    const sp_http_config *cfg = &c->w->srv->cfg;
    int64_t deadline = sp_loop_deadline_after(sp_loop_get(), cfg->header_timeout);
    bool access_log = sp_log_access_enabled();
    for (;;) {
        exchange ex;
        exchange_init(&ex, c, &parser);
        int64_t start = access_log ? sp_now_ns() : 0;
        int rc = read_head(&ex, deadline);
        if (rc == 0) {
            build_request(&ex);
            const char *detail = NULL;
            int status = validate(&ex, &detail);
            if (status) {
                reject(&ex, status, detail);
            } else {
                dispatch(&ex);
                finish_body(&ex);
            }
        } else if (ex.err_status && rc != 1) {
            build_request(&ex);
            ex.req.keep_alive = false;
            reject(&ex, ex.err_status, ex.err_detail);
        } else {
            c->keep_going = false;
        }
        if (access_log)
            log_access(&ex, start);
        bool done = ex.msg_done;
        parser = ex.parser;
        parser.data = NULL;
        if (done)
            consume(c, &ex);
        exchange_fini(&ex);
        if (!c->keep_going || !done) {
            /* Unless the client left, bytes it sent may remain unread. */
            if (rc != 1 && rc != -ECONNRESET && rc != -ECANCELED && (!done || c->rlen > 0))
                linger(c);
            break;
        }
        /* What the handler allocated and deferred belongs to this request. */
        sp_task_run_cleanups(sp_task_current());
        if (c->rlen == 0) {
            /* Nothing buffered: read the socket until EAGAIN before going
             * idle, since its edge will not come again. No suspension between
             * that EAGAIN and going idle, or a new edge could be lost. */
            /* A short read cleared `readable`, but a FIN that came with the
             * last bytes brings no new edge: EV_CLOSED reported it. */
            ssize_t n = (c->readable || c->peer_closed) ? fill(c, NULL, 0) : -EAGAIN;
            if (n == 0 || (n < 0 && n != -EAGAIN)) {
                c->keep_going = false;
                break;
            }
            if (c->rlen == 0) {
                c->task = NULL;
                conn_go_idle(c);
                return 0;
            }
        }
        deadline = sp_loop_deadline_after(sp_loop_get(), cfg->header_timeout);
    }
    c->task = NULL;
    sp_http_conn_close(c);
    return 0;
}

/* ---- Connection lifecycle -------------------------------------------------- */

static void conn_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    sp_http_conn *c = arg;
    c->readable = true;
    if (what & EV_CLOSED)
        c->peer_closed = true;
    if (c->closing)
        return;
    if (!c->task) {
        sp_timer_disarm(sp_loop_get(), &c->idle_timer);
        if (sp_spawn(&c->task, NULL, conn_task, c) != 0) {
            sp_http_conn_close(c);
            return;
        }
        sp_task_release(c->task); /* the task lives until it ends; c->task is borrowed */
        return;
    }
    if (c->read_waiter) {
        if (c->read_waiter->state == SP_FUT_PENDING)
            sp_future_set_result(c->read_waiter, NULL);
        return;
    }
    if (c->in_handler) {
        /* Bytes or an end of stream while the handler runs: only the latter
         * (the client went away) cancels it. */
        if (c->tp->peer_gone(c)) {
            c->keep_going = false;
            sp_task_cancel(c->task);
        }
    }
}

static void idle_expired(sp_cb *cb) {
    sp_http_conn *c = sp_container_of(cb, sp_http_conn, idle_timer.cb);
    sp_http_conn_close(c);
}

sp_http_conn *sp_http_conn_new(sp_http_worker *w, int fd, const struct sockaddr *peer,
                               socklen_t len) {
    pthread_once(&g_settings_once, settings_init);
    sp_http_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->w = w;
    c->tp = &sp_transport_tcp;
    c->fd = fd;
    c->keep_going = true;
    c->peer_len = len <= (socklen_t)sizeof(c->peer) ? len : (socklen_t)sizeof(c->peer);
    memcpy(&c->peer, peer, c->peer_len);
    sp_timer_init(&c->idle_timer, idle_expired);
    sp_loop *loop = sp_loop_get();
    if (event_assign(&c->ev, loop->base, fd, EV_READ | EV_CLOSED | EV_ET | EV_PERSIST,
                     conn_readable, c) != 0 ||
        event_add(&c->ev, NULL) != 0) {
        free(c);
        return NULL;
    }
    /* Until the first request arrives, the header timeout applies. */
    sp_timer_arm(loop, &c->idle_timer, sp_loop_deadline_after(loop, w->srv->cfg.header_timeout));
    sp_list_push_back(&w->conns, &c->link);
    w->nconns++;
    return c;
}

void sp_http_conn_drain(sp_http_conn *c) {
    c->keep_going = false;
    if (!c->task)
        sp_http_conn_close(c);
}

void sp_http_conn_close(sp_http_conn *c) {
    if (c->task && c->task->started) {
        /* The task owns the connection: it closes it on its way out. */
        c->keep_going = false;
        sp_task_cancel(c->task);
        return;
    }
    if (c->task) {
        /* Spawned but never run: cancelled now, it ends without running, so
         * it will not touch the connection. */
        sp_task_cancel(c->task);
        c->task = NULL;
    }
    sp_http_worker *w = c->w;
    c->closing = true;
    event_del(&c->ev);
    sp_timer_disarm(sp_loop_get(), &c->idle_timer);
    close(c->fd);
    buf_release(c);
    sp_list_remove(&c->link);
    w->nconns--;
    free(c);
    sp_http_worker_conn_closed(w);
}
