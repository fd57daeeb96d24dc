/* Replays the fuzzing corpora (tests/fuzz/corpus/<target>/) against the same
 * drivers the libFuzzer targets use, so every input that once found a fault
 * or new coverage runs in every build, sanitizers included, without
 * libFuzzer. Each input must be answered and the connection closed within
 * 3 s, and the server must stay healthy. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fuzz/http_client_driver.h"
#include "fuzz/http_server_driver.h"

/* Reads a whole file (at most 1 MiB); NULL if it cannot. */
static uint8_t *slurp(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = malloc(1 << 20);
    if (buf)
        *len = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

/* Runs each input of tests/fuzz/corpus/<target> through check, which fails
 * the test itself; returns how many there were. */
static size_t replay(const char *target,
                     void (*check)(const char *name, const uint8_t *data, size_t len)) {
    const char *src = getenv("SP_SOURCE_DIR");
    if (!src)
        fail_msg("SP_SOURCE_DIR is not set: run it through ctest");
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/tests/fuzz/corpus/%s", src, target);
    DIR *d = opendir(dir);
    if (!d)
        fail_msg("cannot open %s", dir);
    size_t inputs = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *data = slurp(path, &len);
        if (!data)
            fail_msg("cannot read %s", path);
        check(e->d_name, data, len);
        free(data);
        inputs++;
    }
    closedir(d);
    return inputs;
}

static void server_check(const char *name, const uint8_t *data, size_t len) {
    if (fz_exchange(data, len) < 0)
        fail_msg("%s: the server did not close the connection within 3 s", name);
}

static void test_http_server_corpus_is_answered_and_closed(void **state) {
    (void)state;
    assert_true(replay("http_server", server_check) >= 20);
    /* Still serving. */
    static const char get[] = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    assert_true(fz_exchange((const uint8_t *)get, sizeof(get) - 1) > 0);
}

static void client_check(const char *name, const uint8_t *data, size_t len) {
    if (fzc_exchange(data, len) != 0)
        fail_msg("%s: the client returned an undocumented result (see above)", name);
}

/* Every upstream answer in the corpus gives a response or a documented error
 * with its message, and leaves the client freeable. */
static void test_http_client_corpus_gives_responses_or_documented_errors(void **state) {
    (void)state;
    assert_true(replay("http_client", client_check) >= 20);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_server_corpus_is_answered_and_closed),
        cmocka_unit_test(test_http_client_corpus_gives_responses_or_documented_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
