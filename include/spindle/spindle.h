/* Spindle: asyncio for C. Include this header for the whole public API. */
#ifndef SPINDLE_SPINDLE_H
#define SPINDLE_SPINDLE_H

#include <spindle/future.h>
#include <spindle/task.h>
#include <spindle/io.h>
#include <spindle/combinators.h>
#include <spindle/sync.h>
#include <spindle/queue.h>
#include <spindle/offload.h>
#include <spindle/ratelimit.h>
#include <spindle/http.h>
#include <spindle/router.h>
#include <spindle/log.h>
#include <spindle/client.h>
#include <spindle/ratelimit_mw.h>
#include <spindle/fanout.h>

#endif
