/* HTTP client benchmark: sequential keep-alive GETs from one task against a
 * hello handler served by Spindle's server on another thread of the same
 * process, then the same with 16 tasks at once. Prints `name value` lines:
 *   client_rps              sequential requests per second
 *   client_cpu_us_per_req   CPU time of the client's thread per request (us)
 *   client_c16_rps          requests per second with 16 concurrent tasks
 * Usage: bench_client [requests]   (default 100000) */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <spindle/spindle.h>

static long g_requests = 100000;
static int g_port;

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int h_hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

static void *server_main(void *arg) {
    sp_http_server_run(arg);
    return NULL;
}

typedef struct worker {
    sp_http_client *cl;
    const char *url;
    long n;
    int rc;
} worker;

static int get_loop(void *arg, void **result) {
    (void)result;
    worker *w = arg;
    for (long i = 0; i < w->n; i++) {
        sp_http_client_resp *resp;
        sp_http_client_error err;
        int rc = sp_http_client_get(w->cl, w->url, &resp, &err);
        if (rc != 0) {
            fprintf(stderr, "request %ld: %s\n", i, err.msg);
            return w->rc = rc;
        }
        sp_str body;
        if (sp_http_client_resp_status(resp) != 200 ||
            sp_http_client_resp_body(resp, &body, NULL) != 0 || body.len != 13) {
            sp_http_client_resp_free(resp);
            return w->rc = -EPROTO;
        }
        sp_http_client_resp_free(resp);
    }
    return 0;
}

static int bench_main(void *arg, void **result) {
    (void)arg, (void)result;
    sp_http_client *cl;
    int rc = sp_http_client_create(&cl, NULL);
    if (rc != 0)
        return rc;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", g_port);

    /* Warm up: the connection, the buffers, the server's Date line. */
    worker w = {cl, url, 1000, 0};
    rc = get_loop(&w, NULL);
    w.n = g_requests;
    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    if (rc == 0)
        rc = get_loop(&w, NULL);
    double wall = clock_s(CLOCK_MONOTONIC) - t0, cpu = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    if (rc == 0) {
        printf("client_rps %.0f\n", (double)g_requests / wall);
        printf("client_cpu_us_per_req %.2f\n", cpu * 1e6 / (double)g_requests);
    }

    enum { C = 16 };
    worker ws[C];
    sp_task *ts[C];
    t0 = clock_s(CLOCK_MONOTONIC);
    for (int i = 0; i < C && rc == 0; i++) {
        ws[i] = (worker){cl, url, g_requests / C, 0};
        rc = sp_spawn(&ts[i], NULL, get_loop, &ws[i]);
        if (rc != 0) {
            for (int j = 0; j < i; j++)
                sp_task_release(ts[j]);
        }
    }
    if (rc == 0) {
        rc = sp_gather(ts, C, 0, NULL, NULL);
        wall = clock_s(CLOCK_MONOTONIC) - t0;
        for (int i = 0; i < C; i++)
            sp_task_release(ts[i]);
        if (rc == 0)
            printf("client_c16_rps %.0f\n", (double)(g_requests / C * C) / wall);
    }
    sp_http_client_destroy(cl);
    return rc;
}

int main(int argc, char **argv) {
    if (argc > 1)
        g_requests = atol(argv[1]);
    if (g_requests < 16)
        g_requests = 16;
    sp_router *r;
    sp_http_config cfg;
    sp_http_config_init(&cfg);
    cfg.port = 0;
    cfg.workers = 1;
    cfg.handle_signals = false;
    sp_http_server *srv;
    if (sp_router_create(&r) != 0 || sp_router_add(r, "GET", "/", h_hello, NULL, 0) != 0 ||
        sp_http_server_create(&srv, &cfg, r) != 0) {
        fprintf(stderr, "cannot start the server\n");
        return 1;
    }
    g_port = sp_http_server_port(srv);
    pthread_t th;
    pthread_create(&th, NULL, server_main, srv);
    int rc = sp_run(bench_main, NULL, NULL);
    sp_http_server_stop(srv, false);
    pthread_join(th, NULL);
    sp_http_server_destroy(srv);
    sp_router_destroy(r);
    if (rc != 0)
        fprintf(stderr, "bench_client: %s\n", strerror(-rc));
    return rc == 0 ? 0 : 1;
}
