"""Gathering: gather, TaskGroup, parallel calls under a deadline, rate
limiting, to_thread and a process pool.

The Python original of apps/04_async_gathering.c; both print the same lines.
SP_TIME_SCALE (default 1.0) multiplies every delay; times are printed unscaled.
"""
import asyncio
import time
from concurrent.futures import ProcessPoolExecutor

from tutorial import SCALE, elapsed, say, scaled


# ---- 1. gather ------------------------------------------------------------------

SOURCES = [("users", 0.5, False), ("orders", 1.0, True), ("stock", 1.5, False)]


async def fetch(name, seconds, fail):
    try:
        await asyncio.sleep(scaled(seconds))
    except asyncio.CancelledError:
        say(f"  {name}: cancelled")
        raise
    if fail:
        raise ConnectionError(f"{name}: connection refused")
    return f"{name}: 200 OK"


def spawn_sources():
    return [asyncio.create_task(fetch(*s), name=s[0]) for s in SOURCES]


async def gather_demo():
    start = time.monotonic()
    tasks = spawn_sources()
    try:
        await asyncio.gather(*tasks)
    except ConnectionError as e:
        say(f"gather raised after {elapsed(start):.1f} s: {e}")
    say(f"the others keep running: stock done {tasks[2].done()}")
    say(f"{await tasks[2]} at {elapsed(start):.1f} s")

    start = time.monotonic()
    tasks = spawn_sources()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for r in results:
        say(f"error: {r}" if isinstance(r, Exception) else r)
    say(f"gather(return_exceptions=True) took {elapsed(start):.1f} s")


# ---- 2. gather versus TaskGroup -----------------------------------------------


async def taskgroup_demo():
    start = time.monotonic()
    try:
        async with asyncio.TaskGroup() as tg:
            for s in SOURCES:
                tg.create_task(fetch(*s), name=s[0])
    except* ConnectionError as group:
        for e in group.exceptions:
            say(f"task group failed after {elapsed(start):.1f} s: {e}")


# ---- 3. Parallel API calls under a deadline -------------------------------------

UPSTREAMS = [("weather", 0.8), ("news", 1.2), ("stocks", 0.5), ("sports", 2.5)]


async def call_api(name, latency):
    try:
        await asyncio.sleep(scaled(latency))
    except asyncio.CancelledError:
        say(f"  {name}: cancelled at the deadline")
        raise
    return f"{name}: 200 OK"


async def api_calls(count, deadline):
    start = time.monotonic()
    tasks = [asyncio.create_task(call_api(*u), name=u[0]) for u in UPSTREAMS[:count]]
    try:
        async with asyncio.timeout(scaled(deadline)):
            await asyncio.gather(*tasks)
        say(f"{count} calls in {elapsed(start):.1f} s "
            f"(one after another: {sum(u[1] for u in UPSTREAMS[:count]):.1f} s)")
    except TimeoutError:
        say(f"deadline of {deadline:.1f} s hit after {elapsed(start):.1f} s")
    for t in tasks:
        say(f"{t.get_name()}: cancelled" if t.cancelled() else t.result())


# ---- 4. Rate limiting: at most 3 calls per 2 s ------------------------------------


class TokenBucket:
    """Holds up to `burst` tokens, refilled at `rate` per second, starting
    full; acquire() takes one, waiting for it in FIFO order."""

    def __init__(self, rate, burst):
        self.rate, self.burst, self.tokens = rate, burst, burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()  # serves waiters first come, first served

    def _refill(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    async def acquire(self):
        async with self.lock:
            self._refill()
            while self.tokens < 1:
                await asyncio.sleep((1 - self.tokens) / self.rate)
                self._refill()
            self.tokens -= 1


async def limited_call(bucket, n, start):
    await bucket.acquire()
    say(f"call {n} starts at {elapsed(start):.1f} s")


async def rate_limit_demo():
    start = time.monotonic()
    bucket = TokenBucket(rate=1.5 / SCALE, burst=3)
    await asyncio.gather(*(limited_call(bucket, n, start) for n in range(1, 7)))


# ---- 5. to_thread: blocking code off the loop -------------------------------------


def blocking_read(path):
    time.sleep(scaled(2.0))  # blocks its thread, not the loop
    return f"{path}: 4096 bytes"


async def ticker():
    for i in range(1, 4):
        await asyncio.sleep(scaled(0.3))
        say(f"  tick {i}: the loop is free")


async def to_thread_demo():
    start = time.monotonic()
    tick = asyncio.create_task(ticker())
    result = await asyncio.to_thread(blocking_read, "/var/log/big.log")
    say(f"to_thread returned after {elapsed(start):.1f} s: {result}")
    await tick


# ---- 6. A process pool for CPU-bound work -----------------------------------------

LIMITS = [20000, 40000, 60000, 80000]


def count_primes(limit):
    count = 0
    for n in range(2, limit):
        d = 2
        while d * d <= n and n % d:
            d += 1
        count += d * d > n
    return count


async def process_pool_demo():
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=4) as pool:
        # The argument and the result travel to and from the workers pickled.
        counts = await asyncio.gather(
            *(loop.run_in_executor(pool, count_primes, n) for n in LIMITS))
    for n, c in zip(LIMITS, counts):
        say(f"primes below {n}: {c}")


async def main():
    say("== 1. gather ==")
    await gather_demo()
    say("== 2. gather versus TaskGroup ==")
    await taskgroup_demo()
    say("== 3. parallel API calls under a deadline ==")
    await api_calls(3, 2.0)
    await api_calls(4, 1.5)
    say("== 4. rate limiting: at most 3 calls per 2 s ==")
    await rate_limit_demo()
    say("== 5. to_thread: blocking code off the loop ==")
    await to_thread_demo()
    say("== 6. a process pool for CPU-bound work ==")
    await process_pool_demo()


if __name__ == "__main__":
    asyncio.run(main())
