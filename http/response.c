/* Responses: the head (status line, cached Date, headers), whole bodies in
 * one sendmsg with their head, files with sendfile, chunked streaming and
 * server-sent events, and the write loop that waits while the client is slow. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/uio.h>
#include <time.h>
#include <spindle/io.h>

#include "internal.h"
#include "text.h"

const char *sp_http_status_text(int status) {
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 200   ? "Informational"
               : status < 300 ? "Success"
               : status < 400 ? "Redirection"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

void sp_http_resp_init(sp_http_resp *resp, sp_http_conn *c, sp_http_req *req) {
    memset(resp, 0, sizeof(*resp));
    resp->conn = c;
    resp->req = req;
    resp->head_only = req->method.len == 4 && memcmp(req->method.ptr, "HEAD", 4) == 0;
}

void sp_http_resp_fini(sp_http_resp *resp) {
    free(resp->hdrs);
    free(resp->out);
    resp->hdrs = resp->out = NULL;
}

bool sp_http_resp_started(const sp_http_resp *resp) {
    return resp->head_sent;
}

int sp_http_resp_status(const sp_http_resp *resp) {
    return resp->status;
}

static size_t format_date(char *buf, size_t cap, time_t sec) {
    struct tm tm;
    gmtime_r(&sec, &tm);
    return strftime(buf, cap, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
}

/* "Date: <IMF-fixdate>\r\n", formatted at most once a second per worker; a
 * blocking handler's thread formats its own into tmp, off the worker's cache. */
static sp_str date_line(const sp_http_resp *resp, char *tmp, size_t cap) {
    sp_http_worker *w = resp->conn->w;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    if (resp->buffered)
        return (sp_str){tmp, format_date(tmp, cap, ts.tv_sec)};
    if (ts.tv_sec != w->date_sec) {
        w->date_len = format_date(w->date, sizeof(w->date), ts.tv_sec);
        w->date_sec = ts.tv_sec;
    }
    return (sp_str){w->date, w->date_len};
}

bool sp_http_is_token(sp_str s) {
    return sp_http_token(s.ptr, s.len);
}

int sp_http_resp_header(sp_http_resp *resp, const char *name, const char *value) {
    if (resp->head_sent)
        return -EALREADY;
    size_t nlen = strlen(name), vlen = strlen(value);
    if (!sp_http_is_token((sp_str){name, nlen}))
        return -EINVAL;
    /* The server frames the body: a second length would split the response. */
    if (strcasecmp(name, "Content-Length") == 0 || strcasecmp(name, "Transfer-Encoding") == 0)
        return -EINVAL;
    if (strpbrk(value, "\r\n"))
        return -EINVAL;
    size_t need = resp->hdrs_len + nlen + vlen + 4;
    if (need > resp->hdrs_cap) {
        size_t cap = resp->hdrs_cap ? resp->hdrs_cap * 2 : 256;
        while (cap < need)
            cap *= 2;
        char *p = realloc(resp->hdrs, cap);
        if (!p)
            return -ENOMEM;
        resp->hdrs = p;
        resp->hdrs_cap = cap;
    }
    char *p = resp->hdrs + resp->hdrs_len;
    memcpy(p, name, nlen);
    p[nlen] = ':';
    p[nlen + 1] = ' ';
    memcpy(p + nlen + 2, value, vlen);
    p[nlen + 2 + vlen] = '\r';
    p[nlen + 3 + vlen] = '\n';
    resp->hdrs_len = need;
    return 0;
}

/* Whether the connection stays open after this response. */
static bool keeps_alive(const sp_http_resp *resp) {
    const sp_http_req *req = resp->req;
    return req->keep_alive && resp->conn->keep_going &&
           !(req->close_unless_read && req->body_state != BODY_DONE);
}

static char *put(char *p, const char *s, size_t n) {
    memcpy(p, s, n);
    return p + n;
}

static char *put_u(char *p, unsigned long long v) {
    char tmp[24];
    int i = 24;
    do
        tmp[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    return put(p, tmp + i, (size_t)(24 - i));
}

/* Builds the head into buf, which holds 512 bytes plus the extra headers and
 * the content type (by hand: snprintf was a third of the user-space time).
 * body_len < 0 means a streamed body. Returns its length. */
static size_t build_head(sp_http_resp *resp, char *buf, int status, const char *ctype,
                         long long body_len) {
    /* 1xx, 204 and 304 responses end with their head (RFC 9110 6.4.1): no
     * framing, and no body even if given, or it would read as the next
     * response. */
    bool bodiless = status < 200 || status == 204 || status == 304;
    if (bodiless) {
        resp->head_only = true;
        resp->chunked = false;
    }
    char tmp[40];
    sp_str date = date_line(resp, tmp, sizeof(tmp));
    char *p = buf;
    p = put(p, "HTTP/1.1 ", 9);
    p = put_u(p, (unsigned)status);
    *p++ = ' ';
    const char *txt = sp_http_status_text(status);
    p = put(p, txt, strlen(txt));
    p = put(p, "\r\nServer: spindle\r\n", 19);
    p = put(p, date.ptr, date.len);
    if (ctype) {
        p = put(p, "Content-Type: ", 14);
        p = put(p, ctype, strlen(ctype));
        p = put(p, "\r\n", 2);
    }
    if (body_len >= 0 && !bodiless) {
        p = put(p, "Content-Length: ", 16);
        p = put_u(p, (unsigned long long)body_len);
        p = put(p, "\r\n", 2);
    } else if (resp->chunked) {
        p = put(p, "Transfer-Encoding: chunked\r\n", 28);
    }
    bool alive = keeps_alive(resp) && (bodiless || body_len >= 0 || resp->chunked);
    if (!alive) {
        resp->conn->keep_going = false;
        p = put(p, "Connection: close\r\n", 19);
    } else if (resp->req->version == 10) {
        p = put(p, "Connection: keep-alive\r\n", 24);
    }
    if (resp->hdrs_len)
        p = put(p, resp->hdrs, resp->hdrs_len);
    p = put(p, "\r\n", 2);
    resp->status = status;
    resp->head_sent = true;
    return (size_t)(p - buf);
}

/* Sends every byte of iov, waiting for the socket when it is full. */
int sp_http_write_all(sp_http_conn *c, const struct iovec *iov_in, int iovcnt) {
    struct iovec iov[8];
    if (iovcnt > 8)
        return -EINVAL;
    memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
    struct iovec *v = iov;
    int n = iovcnt;
    double timeout = c->w->srv->cfg.write_timeout;
    while (n > 0) {
        ssize_t w = c->tp->writev(c, v, n);
        if (w < 0) {
            int rc = (int)w;
            if (w == SP_TP_AGAIN || w == SP_TP_WANT_WRITE || w == SP_TP_WANT_READ) {
                rc = sp_io_wait(c->fd, w == SP_TP_WANT_READ ? SP_IO_READ : SP_IO_WRITE, timeout);
                if (rc == 0)
                    continue;
            }
            c->keep_going = false;
            return rc;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= v->iov_len) {
            left -= v->iov_len;
            v++;
            n--;
        }
        if (n > 0) {
            v->iov_base = (char *)v->iov_base + left;
            v->iov_len -= left;
        }
    }
    return 0;
}

/* Sends the head (content_length < 0: a streamed body) followed by body. */
/* Writes iov, or collects it while a blocking handler's thread answers. */
static int resp_out(sp_http_resp *resp, const struct iovec *iov, int n) {
    if (!resp->buffered)
        return sp_http_write_all(resp->conn, iov, n);
    for (int i = 0; i < n; i++) {
        size_t need = resp->out_len + iov[i].iov_len;
        if (need > resp->out_cap) {
            size_t cap = resp->out_cap ? resp->out_cap * 2 : 1024;
            while (cap < need)
                cap *= 2;
            char *p = realloc(resp->out, cap);
            if (!p)
                return -ENOMEM;
            resp->out = p;
            resp->out_cap = cap;
        }
        memcpy(resp->out + resp->out_len, iov[i].iov_base, iov[i].iov_len);
        resp->out_len = need;
    }
    return 0;
}

int sp_http_resp_flush_buffered(sp_http_resp *resp) {
    if (!resp->out_len)
        return 0;
    struct iovec iov = {resp->out, resp->out_len};
    resp->out_len = 0;
    return sp_http_write_all(resp->conn, &iov, 1);
}

static int send_head(sp_http_resp *resp, int status, const char *ctype, long long content_length,
                     const void *body, size_t len) {
    if (resp->head_sent)
        return -EALREADY;
    if (status < 100 || status > 999)
        return -EINVAL;
    /* The content type goes into the head as is: it must fit and hold no line
     * break (header injection). */
    size_t clen = ctype ? strcspn(ctype, "\r\n") : 0;
    if (ctype && ctype[clen])
        return -EINVAL;
    size_t cap = 512 + resp->hdrs_len + clen;
    char small[1024];
    char *head = cap <= sizeof(small) ? small : malloc(cap);
    if (!head)
        return -ENOMEM;
    size_t hlen = build_head(resp, head, status, ctype, content_length);
    struct iovec iov[2] = {{head, hlen}, {(void *)body, len}};
    int n = (len && !resp->head_only) ? 2 : 1;
    int rc = resp_out(resp, iov, n);
    if (head != small)
        free(head);
    if (rc == 0 && n == 2)
        resp->body_bytes += len;
    return rc;
}

int sp_http_resp_send(sp_http_resp *resp, int status, const char *content_type, const void *body,
                      size_t len) {
    int rc = send_head(resp, status, content_type, (long long)len, body, len);
    if (rc == 0)
        resp->finished = true;
    return rc;
}

int sp_http_resp_text(sp_http_resp *resp, int status, const char *content_type, const char *body) {
    return sp_http_resp_send(resp, status, content_type, body, strlen(body));
}

int sp_http_send_error(sp_http_resp *resp, int status, const char *detail) {
    resp->conn->keep_going = false;
    char body[256];
    int n = snprintf(body, sizeof(body), "%d %s%s%s\n", status, sp_http_status_text(status),
                     detail ? ": " : "", detail ? detail : "");
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(body))
        n = sizeof(body) - 1;
    return sp_http_resp_send(resp, status, "text/plain; charset=utf-8", body, (size_t)n);
}

int sp_http_resp_send_file(sp_http_resp *resp, int status, const char *content_type, int fd,
                           off_t offset, size_t len) {
    if (resp->buffered)
        return -ENOTSUP;
    int rc = send_head(resp, status, content_type, (long long)len, NULL, 0);
    if (rc != 0 || resp->head_only) {
        resp->finished = rc == 0;
        return rc;
    }
    sp_http_conn *c = resp->conn;
    size_t left = len;
    char *copy = NULL; /* for transports without sendfile */
    while (left > 0) {
        ssize_t n;
        if (c->tp->sendfile) {
            n = c->tp->sendfile(c, fd, &offset, left);
        } else {
            if (!copy && !(copy = malloc(64 * 1024)))
                return -ENOMEM;
            n = pread(fd, copy, left < 64 * 1024 ? left : 64 * 1024, offset);
            if (n < 0)
                n = -errno;
            if (n > 0) {
                struct iovec iov = {copy, (size_t)n};
                rc = sp_http_write_all(c, &iov, 1);
                if (rc != 0)
                    break;
                offset += n;
            }
        }
        if (n > 0) {
            left -= (size_t)n;
            resp->body_bytes += (uint64_t)n;
            continue;
        }
        if (n == SP_TP_AGAIN || n == SP_TP_WANT_WRITE) {
            rc = sp_io_wait(c->fd, SP_IO_WRITE, c->w->srv->cfg.write_timeout);
            if (rc == 0)
                continue;
        } else {
            /* The length is promised: a short file or a dead peer ends the
             * connection. */
            rc = n == 0 ? -EIO : (int)n;
        }
        break;
    }
    free(copy);
    if (rc != 0) {
        c->keep_going = false;
        return rc;
    }
    resp->finished = true;
    return 0;
}

int sp_http_resp_start(sp_http_resp *resp, int status, const char *content_type) {
    if (resp->head_sent)
        return -EALREADY;
    if (resp->buffered)
        return -ENOTSUP;
    resp->chunked = resp->req->version >= 11;
    resp->streaming = true;
    return send_head(resp, status, content_type, -1, NULL, 0);
}

int sp_http_resp_start_length(sp_http_resp *resp, int status, const char *content_type,
                              uint64_t length) {
    if (resp->head_sent)
        return -EALREADY;
    if (resp->buffered)
        return -ENOTSUP;
    if (length > INT64_MAX)
        return -EINVAL;
    resp->streaming = true;
    resp->sized = true;
    resp->remaining = length;
    return send_head(resp, status, content_type, (long long)length, NULL, 0);
}

int sp_http_resp_write(sp_http_resp *resp, const void *data, size_t len) {
    if (!resp->streaming || resp->finished)
        return -EINVAL;
    if (len == 0 || resp->head_only)
        return 0;
    if (resp->sized) {
        if (len > resp->remaining)
            return -EMSGSIZE;
        resp->remaining -= len;
    }
    int rc;
    if (resp->chunked) {
        char size[24];
        int n = snprintf(size, sizeof(size), "%zx\r\n", len);
        struct iovec iov[3] = {{size, (size_t)n}, {(void *)data, len}, {"\r\n", 2}};
        rc = resp_out(resp, iov, 3);
    } else {
        struct iovec iov[1] = {{(void *)data, len}};
        rc = resp_out(resp, iov, 1);
    }
    if (rc == 0)
        resp->body_bytes += len;
    return rc;
}

int sp_http_resp_end(sp_http_resp *resp) {
    if (!resp->streaming || resp->finished)
        return -EINVAL;
    resp->finished = true;
    if (resp->sized && resp->remaining > 0 && !resp->head_only) {
        /* The length is promised: only closing tells the client it is cut. */
        resp->conn->keep_going = false;
        return -EIO;
    }
    if (!resp->chunked || resp->head_only)
        return 0;
    struct iovec iov[1] = {{"0\r\n\r\n", 5}};
    return sp_http_write_all(resp->conn, iov, 1);
}

int sp_http_sse_start(sp_http_resp *resp) {
    int rc = sp_http_resp_header(resp, "Cache-Control", "no-cache");
    if (rc == 0)
        rc = sp_http_resp_start(resp, 200, "text/event-stream");
    return rc;
}

int sp_http_sse_send(sp_http_resp *resp, const char *event, const char *data, const char *id) {
    if ((event && strpbrk(event, "\r\n")) || (id && strpbrk(id, "\r\n")))
        return -EINVAL;
    size_t dlen = data ? strlen(data) : 0, lines = 1;
    for (size_t i = 0; i < dlen; i++)
        lines += data[i] == '\n';
    size_t cap = dlen + lines * 7 + (event ? strlen(event) + 8 : 0) + (id ? strlen(id) + 5 : 0) + 2;
    char *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    size_t n = 0;
    if (event)
        n += (size_t)sprintf(buf + n, "event: %s\n", event);
    if (id)
        n += (size_t)sprintf(buf + n, "id: %s\n", id);
    const char *p = data ? data : "";
    for (;;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        memcpy(buf + n, "data: ", 6);
        memcpy(buf + n + 6, p, l);
        n += 6 + l;
        buf[n++] = '\n';
        if (!nl)
            break;
        p = nl + 1;
    }
    buf[n++] = '\n';
    int rc = sp_http_resp_write(resp, buf, n);
    free(buf);
    return rc;
}
