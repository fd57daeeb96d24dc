/* The HTTP client under an arbitrary upstream: a raw responder thread that
 * answers every request head it reads with the input's bytes and then closes,
 * and a function that runs two requests against it in a fresh loop (one read
 * whole, one streamed piece by piece through the same client, so a pooled
 * connection left by the first is reused or dropped). Shared by the libFuzzer
 * target (fuzz_http_client.c) and the corpus replay test. */
#ifndef SP_FUZZ_HTTP_CLIENT_DRIVER_H
#define SP_FUZZ_HTTP_CLIENT_DRIVER_H

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

static int g_fzc_listen = -1, g_fzc_port;
/* The current input, copied: a responder of an earlier input may still be
 * running when the next one starts (a connection the client gave up on). */
static pthread_mutex_t g_fzc_mu = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *g_fzc_data;
static size_t g_fzc_len;

/* Answers fd's request with the current input and closes it, once fd holds
 * the end of a request head (or a full buffer). The send is done under the
 * lock: an input fits in the socket's buffer, so it does not wait. */
typedef struct fzc_peer {
    int fd;
    size_t have;
    char buf[4096];
} fzc_peer;

static bool fzc_peer_step(fzc_peer *c) {
    ssize_t n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - 1 - c->have, MSG_DONTWAIT);
    if (n < 0 && errno == EAGAIN)
        return true;
    if (n <= 0)
        return false;
    c->have += (size_t)n;
    c->buf[c->have] = '\0';
    if (!strstr(c->buf, "\r\n\r\n") && c->have < sizeof(c->buf) - 1)
        return true;
    pthread_mutex_lock(&g_fzc_mu);
    for (size_t off = 0; off < g_fzc_len;) {
        ssize_t w = send(c->fd, g_fzc_data + off, g_fzc_len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    pthread_mutex_unlock(&g_fzc_mu);
    return false;
}

/* One thread, no allocation after start (a leak check between two inputs
 * must see nothing of it): poll over the listener and up to FZC_PEERS
 * connections; each gets one answer, then is closed. */
#define FZC_PEERS 16

static void *fzc_responder(void *arg) {
    (void)arg;
    static fzc_peer peers[FZC_PEERS];
    for (int i = 0; i < FZC_PEERS; i++)
        peers[i].fd = -1;
    for (;;) {
        struct pollfd p[FZC_PEERS + 1];
        p[0] = (struct pollfd){.fd = g_fzc_listen, .events = POLLIN};
        for (int i = 0; i < FZC_PEERS; i++)
            p[i + 1] = (struct pollfd){.fd = peers[i].fd, .events = POLLIN};
        if (poll(p, FZC_PEERS + 1, -1) <= 0)
            continue;
        for (int i = 0; i < FZC_PEERS; i++) {
            if (peers[i].fd >= 0 && p[i + 1].revents && !fzc_peer_step(&peers[i])) {
                close(peers[i].fd);
                peers[i].fd = -1;
            }
        }
        if (p[0].revents & POLLIN) {
            int fd = accept4(g_fzc_listen, NULL, NULL, SOCK_CLOEXEC);
            int i = 0;
            while (i < FZC_PEERS && peers[i].fd >= 0)
                i++;
            if (fd >= 0 && i == FZC_PEERS) {
                /* The oldest connections are abandoned ones: drop the first. */
                close(peers[0].fd);
                i = 0;
            }
            if (fd >= 0)
                peers[i] = (fzc_peer){.fd = fd};
        }
    }
    return NULL;
}

static void fzc_start(void) {
    if (g_fzc_listen >= 0)
        return;
    sp_log_set_level(SP_LOG_ERROR);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        abort();
    g_fzc_listen = fd;
    g_fzc_port = ntohs(sa.sin_port);
    pthread_t th;
    if (pthread_create(&th, NULL, fzc_responder, NULL) != 0)
        abort();
    pthread_detach(th);
}

/* Checks one client call's outcome: a response, or one of the documented
 * errors with a message. Returns false on anything else. */
static bool fzc_outcome_ok(int rc, const sp_http_client_error *e) {
    switch (rc) {
    case 0:
        return true;
    case -ECONNRESET:
    case -EPROTO:
    case -EMSGSIZE:
    case -ETIMEDOUT:
        return e->code == rc && e->msg[0] != '\0';
    default:
        fprintf(stderr, "unexpected client result %d: %s\n", rc, e->msg);
        return false;
    }
}

static int fzc_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client_config cfg;
    sp_http_client_config_init(&cfg);
    cfg.first_byte_timeout = 1;
    cfg.total_timeout = 2;
    cfg.max_header_bytes = 8192;
    cfg.max_response_bytes = 64 * 1024;
    sp_http_client *cl;
    if (sp_http_client_create(&cl, &cfg) != 0)
        return -ENOMEM;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", g_fzc_port);
    int bad = 0;
    for (int round = 0; round < 2; round++) {
        sp_http_request req = {.url = url, .stream = round == 1};
        sp_http_client_resp *resp = NULL;
        sp_http_client_error e = {0};
        int rc = sp_http_client_request(cl, &req, &resp, &e);
        bad += !fzc_outcome_ok(rc, &e);
        if (rc != 0)
            continue;
        sp_str name, value, piece;
        size_t n = sp_http_client_resp_header_count(resp);
        for (size_t i = 0; i < n; i++) {
            if (sp_http_client_resp_header_at(resp, i, &name, &value) != 0 || name.len == 0) {
                fprintf(stderr, "header %zu of %zu: no name\n", i, n);
                bad++;
            }
        }
        if (round == 0) {
            rc = sp_http_client_resp_body(resp, &piece, &e);
            bad += !fzc_outcome_ok(rc, &e);
        } else {
            while ((rc = sp_http_client_resp_read(resp, &piece, &e)) == 0 && piece.len > 0)
                ;
            bad += !fzc_outcome_ok(rc, &e);
        }
        sp_http_client_resp_free(resp);
    }
    int drc = sp_http_client_destroy(cl);
    if (drc != 0) {
        fprintf(stderr, "sp_http_client_destroy: %d\n", drc);
        bad++;
    }
    return bad ? -EPROTO : 0;
}

/* Runs the two requests against data. Returns 0, or -EPROTO if the client
 * returned something undocumented or misbehaved. */
static int fzc_exchange(const uint8_t *data, size_t size) {
    fzc_start();
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    pthread_mutex_lock(&g_fzc_mu);
    free(g_fzc_data);
    g_fzc_data = copy;
    g_fzc_len = size;
    pthread_mutex_unlock(&g_fzc_mu);
    return sp_run(fzc_main, NULL, NULL);
}

#endif
