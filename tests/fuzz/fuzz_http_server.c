/* libFuzzer target: arbitrary bytes as one client connection to the HTTP
 * server. Built with -DSP_FUZZ=ON (clang); run as
 *   build/fuzz/fuzz_http_server tests/fuzz/corpus/http_server -max_total_time=600
 * Findings go into the corpus, which test_fuzz_corpus replays in every build. */
#include "http_server_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fz_exchange(data, size) < 0) {
        fprintf(stderr, "the server did not close the connection within 3 s\n");
        abort();
    }
    return 0;
}
