/* Logging benchmark: the calling thread's CPU time per line, with the logs
 * going to /dev/null (the writer thread's own work is not counted). Prints
 * one `name value` line per figure:
 *   access_log_line_ns       one access line, common format
 *   access_log_json_line_ns  one access line, JSON
 *   access_log_off_ns        sp_log_access while access logging is off
 *   error_log_line_ns        one sp_log(SP_LOG_INFO, ...) line
 *   log_lines_dropped        lines lost during the run (should be 0)
 * Usage: bench_log [lines]   (default 2000000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <spindle/spindle.h>

#define S(lit) ((sp_str){(lit), sizeof(lit) - 1})

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double bench_access(long n) {
    sp_access_entry e = {
        .remote = S("127.0.0.1"),
        .method = S("GET"),
        .target = S("/api/v1/items?page=2&sort=name"),
        .proto = S("HTTP/1.1"),
        .status = 200,
        .bytes = 1532,
        .duration = 0.000123,
        .referer = S("https://example.com/items"),
        .user_agent = S("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    };
    double t0 = cpu_s();
    for (long i = 0; i < n; i++) {
        e.bytes = (uint64_t)i;
        sp_log_access(&e);
    }
    return (cpu_s() - t0) * 1e9 / (double)n;
}

static double bench_error(long n) {
    double t0 = cpu_s();
    for (long i = 0; i < n; i++)
        sp_log(SP_LOG_INFO, "request %ld done in %d us", i, 12);
    return (cpu_s() - t0) * 1e9 / (double)n;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    if (n <= 0 || sp_log_open_access("/dev/null") != 0 || sp_log_open_error("/dev/null") != 0) {
        fprintf(stderr, "usage: bench_log [lines]\n");
        return 1;
    }
    sp_log_set_tag("worker 1");
    bench_access(n / 10); /* warm up: buffers, page faults, the writer */
    printf("access_log_line_ns %.1f\n", bench_access(n));
    sp_log_set_access_format(SP_ACCESS_JSON);
    printf("access_log_json_line_ns %.1f\n", bench_access(n));
    sp_log_open_access(NULL);
    printf("access_log_off_ns %.2f\n", bench_access(n));
    printf("error_log_line_ns %.1f\n", bench_error(n));
    sp_log_flush();
    printf("log_lines_dropped %llu\n", (unsigned long long)sp_log_dropped());
    sp_log_shutdown();
    return 0;
}
