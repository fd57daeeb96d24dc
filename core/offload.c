/* Offload: runs blocking functions on a thread pool. */
#include "loop.h"

void sp_offload_shutdown(sp_loop *loop) {
    (void)loop;
}
