/* apps/hello: the example HTTP server. Every route shows one thing a handler
 * can do; run it with --help for the flags.
 *   GET  /            plaintext "Hello, World!"
 *   GET  /json        a JSON object
 *   POST /echo        the request body, echoed
 *   GET  /sleep?ms=N  answers after N ms without blocking anyone else
 *   GET  /stream      a chunked response written in pieces over time
 *   GET  /events      server-sent events
 *   GET  /blocking    a blocking call, run on the to_thread pool
 *   GET  /users/:id   a path parameter */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <spindle/spindle.h>

static int hello(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_send(resp, 200, "text/plain", "Hello, World!", 13);
}

static int json(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    return sp_http_resp_text(resp, 200, "application/json", "{\"message\":\"Hello, World!\"}");
}

static int echo(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str body;
    int rc = sp_http_req_body(req, &body);
    if (rc != 0)
        return rc; /* -EMSGSIZE becomes 413, -ETIMEDOUT 408 */
    sp_str ctype;
    if (sp_http_req_header(req, "Content-Type", &ctype) == 0) {
        char buf[128];
        snprintf(buf, sizeof(buf), "%.*s", (int)ctype.len, ctype.ptr);
        sp_http_resp_header(resp, "X-Echo-Content-Type", buf);
    }
    return sp_http_resp_send(resp, 200, "application/octet-stream", body.ptr, body.len);
}

static int sleep_ms(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str v;
    long ms = 100;
    if (sp_http_req_query(req, "ms", &v) == 0) {
        char *end;
        ms = strtol(v.ptr, &end, 10);
        if (end == v.ptr || *end || ms < 0 || ms > 60000)
            return sp_http_resp_text(resp, 400, "text/plain", "ms must be 0..60000\n");
    }
    int rc = sp_sleep((double)ms / 1000.0);
    if (rc != 0)
        return rc;
    char body[64];
    int n = snprintf(body, sizeof(body), "slept %ld ms\n", ms);
    return sp_http_resp_send(resp, 200, "text/plain", body, (size_t)n);
}

static int stream(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int rc = sp_http_resp_start(resp, 200, "text/plain");
    for (int i = 1; rc == 0 && i <= 5; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "piece %d\n", i);
        rc = sp_http_resp_write(resp, line, (size_t)n);
        if (rc == 0 && i < 5)
            rc = sp_sleep(0.1);
    }
    return rc ? rc : sp_http_resp_end(resp);
}

static int events(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    int rc = sp_http_sse_start(resp);
    for (int i = 1; rc == 0 && i <= 3; i++) {
        char data[32], id[16];
        snprintf(data, sizeof(data), "tick %d", i);
        snprintf(id, sizeof(id), "%d", i);
        rc = sp_http_sse_send(resp, "tick", data, id);
        if (rc == 0 && i < 3)
            rc = sp_sleep(0.1);
    }
    return rc ? rc : sp_http_resp_end(resp);
}

/* Runs on a to_thread worker: plain blocking code is fine here. */
static int blocking(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)req, (void)arg;
    usleep(50 * 1000);
    return sp_http_resp_text(resp, 200, "text/plain", "done blocking for 50 ms\n");
}

static int user(sp_http_req *req, sp_http_resp *resp, void *arg) {
    (void)arg;
    sp_str id;
    sp_http_req_param(req, "id", &id);
    char body[160];
    int n =
        snprintf(body, sizeof(body), "{\"id\":\"%.*s\"}", (int)(id.len > 64 ? 64 : id.len), id.ptr);
    return sp_http_resp_send(resp, 200, "application/json", body, (size_t)n);
}

static void usage(FILE *f) {
    fprintf(f, "usage: hello [--host ADDR] [--port N] [--workers N] [--access-log common|json]\n"
               "  --host ADDR     address to listen on (default 127.0.0.1)\n"
               "  --port N        port (default 8080; 0 picks a free one)\n"
               "  --workers N     worker threads (default: the number of cores)\n"
               "  --access-log F  access log to stdout in common or json format (default off)\n");
}

int main(int argc, char **argv) {
    sp_http_config cfg;
    sp_http_config_init(&cfg);
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'H'},    {"port", required_argument, NULL, 'p'},
        {"workers", required_argument, NULL, 'w'}, {"access-log", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "H:p:w:a:h", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            cfg.host = optarg;
            break;
        case 'p':
            cfg.port = atoi(optarg);
            break;
        case 'w':
            cfg.workers = atoi(optarg);
            break;
        case 'a':
            cfg.access_log = strcmp(optarg, "json") == 0     ? SP_ACCESS_LOG_JSON
                             : strcmp(optarg, "common") == 0 ? SP_ACCESS_LOG_COMMON
                                                             : -1;
            if (cfg.access_log < 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    sp_router *r;
    if (sp_router_create(&r) != 0)
        return 1;
    sp_router_add(r, "GET", "/", hello, NULL, 0);
    sp_router_add(r, "GET", "/json", json, NULL, 0);
    sp_router_add(r, "POST", "/echo", echo, NULL, 0);
    sp_router_add(r, "GET", "/sleep", sleep_ms, NULL, 0);
    sp_router_add(r, "GET", "/stream", stream, NULL, 0);
    sp_router_add(r, "GET", "/events", events, NULL, 0);
    sp_router_add(r, "GET", "/blocking", blocking, NULL, SP_ROUTE_BLOCKING);
    sp_router_add(r, "GET", "/users/:id", user, NULL, 0);

    sp_http_server *srv;
    int rc = sp_http_server_create(&srv, &cfg, r);
    if (rc != 0) {
        fprintf(stderr, "hello: cannot listen on %s:%d: %s\n", cfg.host, cfg.port, strerror(-rc));
        sp_router_destroy(r);
        return 1;
    }
    bool v6 = strchr(cfg.host, ':') != NULL;
    printf("hello: listening on http://%s%s%s:%d/ with %d workers\n", v6 ? "[" : "", cfg.host,
           v6 ? "]" : "", sp_http_server_port(srv), cfg.workers);
    fflush(stdout);
    rc = sp_http_server_run(srv);
    sp_http_server_destroy(srv);
    sp_router_destroy(r);
    return rc == 0 ? 0 : 1;
}
