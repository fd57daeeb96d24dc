/* libFuzzer target: arbitrary bytes as an upstream's answer to the HTTP
 * client. Built with -DSP_FUZZ=ON (clang); run as
 *   build/fuzz/fuzz_http_client tests/fuzz/corpus/http_client -max_total_time=600
 * Findings go into the corpus, which test_fuzz_corpus replays in every build. */
#include "http_client_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (fzc_exchange(data, size) != 0)
        abort();
    return 0;
}
