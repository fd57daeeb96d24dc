/* The HTTP server under arbitrary bytes: one server, started once on an
 * ephemeral loopback port in this process (so a sanitizer sees its faults),
 * and a function that sends one input on a new connection, half-closes, and
 * reads until the server closes. Shared by the libFuzzer target
 * (fuzz_http_server.c) and the corpus replay test (test_fuzz_corpus.c). */
#ifndef SP_FUZZ_HTTP_SERVER_DRIVER_H
#define SP_FUZZ_HTTP_SERVER_DRIVER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <spindle/spindle.h>

/* ---- Handlers: one of each way a handler touches the request and answers. */

static int fz_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

/* Reads the body whole and answers with it, its headers echoed back. */
static int fz_echo(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str body, name, value;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < sp_http_req_header_count(req) && i < 8; i++) {
        char n[64], v[256];
        sp_http_req_header_at(req, i, &name, &value);
        snprintf(n, sizeof(n), "X-Echo-%.*s", (int)(name.len < 40 ? name.len : 40), name.ptr);
        snprintf(v, sizeof(v), "%.*s", (int)(value.len < 200 ? value.len : 200), value.ptr);
        sp_http_resp_header(resp, n, v); /* a refused name or value is skipped */
    }
    return sp_http_resp_send(resp, 200, "application/octet-stream", body.ptr, body.len);
}

/* Streams the body back piece by piece as it arrives. */
static int fz_pieces(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    int rc = sp_http_resp_start(resp, 200, NULL);
    sp_str piece;
    while (rc == 0 && (rc = sp_http_req_read(req, &piece)) == 0 && piece.len > 0)
        rc = sp_http_resp_write(resp, piece.ptr, piece.len);
    return rc ? rc : sp_http_resp_end(resp);
}

/* Path parameters, the decoded path, query parameters. */
static int fz_params(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str id = {"", 0}, rest = {"", 0}, q = {"", 0}, path = sp_http_req_path(req);
    sp_http_req_param(req, "id", &id);
    sp_http_req_param(req, "*", &rest);
    sp_http_req_query(req, "q", &q);
    char body[512];
    int n = snprintf(body, sizeof(body), "%.*s|%.*s|%.*s|%.*s", (int)(id.len % 100), id.ptr,
                     (int)(rest.len % 100), rest.ptr, (int)(q.len % 100), q.ptr,
                     (int)(path.len % 100), path.ptr);
    return sp_http_resp_send(resp, 200, "text/plain", body, (size_t)n);
}

/* A body of announced length, written short when ?short=1. */
static int fz_sized(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str v;
    bool cut = sp_http_req_query(req, "short", &v) == 0;
    int rc = sp_http_resp_start_length(resp, 200, "text/plain", 10);
    if (rc == 0)
        rc = sp_http_resp_write(resp, "0123456789", cut ? 4 : 10);
    return rc ? rc : sp_http_resp_end(resp);
}

static sp_http_server *g_fz_srv;
static int g_fz_port;

static void *fz_server_main(void *arg) {
    (void)arg;
    sp_http_server_run(g_fz_srv);
    return NULL;
}

/* Starts the server once; aborts if it cannot. */
static void fz_server_start(void) {
    if (g_fz_srv)
        return;
    sp_log_set_level(SP_LOG_ERROR); /* every rejection would log a line */
    sp_router *r = NULL;
    sp_http_config cfg;
    sp_http_config_init(&cfg);
    cfg.host = "127.0.0.1";
    cfg.port = 0;
    cfg.workers = 1;
    cfg.handle_signals = false;
    cfg.header_timeout = 1;
    cfg.body_timeout = 1;
    cfg.max_body = 64 * 1024;
    if (sp_router_create(&r) != 0 || sp_router_add(r, "GET", "/", fz_hello, NULL, 0) != 0 ||
        sp_router_add(r, "*", "/echo", fz_echo, NULL, 0) != 0 ||
        sp_router_add(r, "POST", "/pieces", fz_pieces, NULL, 0) != 0 ||
        sp_router_add(r, "GET", "/u/:id", fz_params, NULL, 0) != 0 ||
        sp_router_add(r, "GET", "/files/*", fz_params, NULL, 0) != 0 ||
        sp_router_add(r, "GET", "/sized", fz_sized, NULL, 0) != 0 ||
        sp_http_server_create(&g_fz_srv, &cfg, r) != 0) {
        fprintf(stderr, "fuzz driver: cannot start the server\n");
        abort();
    }
    g_fz_port = sp_http_server_port(g_fz_srv);
    pthread_t th;
    if (pthread_create(&th, NULL, fz_server_main, NULL) != 0)
        abort();
    pthread_detach(th);
}

/* Sends data on a new connection (in two writes split at data[0]'s share of
 * the length, so pieces straddle the parser's reads), half-closes, and reads
 * until the server closes or 3 s pass. Returns the bytes received, or -1 if
 * the server did not close in time (a hang: the caller reports it). */
static long fz_exchange(const uint8_t *data, size_t size) {
    fz_server_start();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_fz_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        abort(); /* the server is gone: a crash would have stopped us already */
    size_t split = size ? (size_t)data[0] * size / 256 : 0;
    size_t parts[2][2] = {{0, split}, {split, size}};
    for (int i = 0; i < 2; i++) {
        for (size_t off = parts[i][0]; off < parts[i][1];) {
            ssize_t n = send(fd, data + off, parts[i][1] - off, MSG_NOSIGNAL);
            if (n <= 0)
                break; /* the server closed early: fine */
            off += (size_t)n;
        }
        if (i == 0 && split > 0)
            usleep(200);
    }
    shutdown(fd, SHUT_WR);
    long total = 0;
    char buf[65536];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 3000) <= 0) {
            total = -1;
            break;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break;
        total += n;
    }
    close(fd);
    return total;
}

#endif
