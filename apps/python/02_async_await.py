"""Async/await tools: an async context manager, an async iterator, wait_for,
shield and the timeout scope.

The Python original of apps/02_async_await.c; both print the same lines.
SP_TIME_SCALE (default 1.0) multiplies every delay; times are printed unscaled.
"""
import asyncio
import time

from tutorial import elapsed, say, scaled


# ---- 1. An async context manager -----------------------------------------------


class Connection:
    def __init__(self, host):
        self.host = host

    async def __aenter__(self):
        say(f"connecting to {self.host}...")
        await asyncio.sleep(scaled(0.5))
        say("connected")
        return self

    async def __aexit__(self, exc_type, exc, tb):
        say(f"closing {self.host}...")
        await asyncio.sleep(scaled(0.2))
        say("closed")
        return False  # do not swallow the body's exception

    async def query(self, sql, seconds=0.3):
        say(f"query: {sql}")
        await asyncio.sleep(scaled(seconds))
        if not sql.startswith("SELECT "):
            raise ValueError("syntax error in query")
        return 3


async def use_connection():
    async with Connection("db.example") as conn:
        rows = await conn.query("SELECT * FROM users")
        say(f"{rows} rows")


async def failing_body():
    try:
        async with Connection("db.example") as conn:
            await conn.query("SELEC oops")  # raises ValueError
    except ValueError as e:
        say(f"body failed: {e}")


async def long_query():
    async with Connection("db.example") as conn:
        await conn.query("SELECT slowly", seconds=5.0)


async def cancelled_body():
    task = asyncio.create_task(long_query())
    await asyncio.sleep(scaled(1.0))
    say("cancelling the query task")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        say(f"query task cancelled: {task.cancelled()}")


# ---- 2. An async iterator -------------------------------------------------------


class AsyncRange:
    def __init__(self, n, delay):
        self.i, self.n, self.delay = 0, n, delay

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.i == self.n:
            raise StopAsyncIteration
        await asyncio.sleep(scaled(self.delay))
        self.i += 1
        return self.i - 1


async def iterate():
    start = time.monotonic()
    async for i in AsyncRange(3, 0.5):
        say(f"got {i} at {elapsed(start):.1f} s")


# ---- 3. wait_for ------------------------------------------------------------------


async def slow_operation(seconds):
    try:
        await asyncio.sleep(scaled(seconds))
    except asyncio.CancelledError:
        say(f"  slow_operation({seconds}) cancelled")
        raise
    return f"finished after {seconds} s"


async def wait_for_demo():
    start = time.monotonic()
    try:
        await asyncio.wait_for(slow_operation(2.0), timeout=scaled(1.0))
    except TimeoutError:
        say(f"wait_for: timed out after {elapsed(start):.1f} s")
    result = await asyncio.wait_for(slow_operation(0.5), timeout=scaled(1.0))
    say(f"wait_for: {result}")


# ---- 4. shield ----------------------------------------------------------------------


async def save_to_disk():
    say("  saving...")
    await asyncio.sleep(scaled(1.0))
    say("  saved")
    return "saved 12 records"


async def shield_demo():
    start = time.monotonic()
    save = asyncio.create_task(save_to_disk())
    try:
        async with asyncio.timeout(scaled(0.5)):
            await asyncio.shield(save)
    except TimeoutError:
        say(f"gave up waiting after {elapsed(start):.1f} s; save done: {save.done()}")
    result = await save
    say(f"the save went on: {result} at {elapsed(start):.1f} s")


# ---- 5. The timeout scope ---------------------------------------------------------


async def timeout_demo():
    start = time.monotonic()
    try:
        async with asyncio.timeout(scaled(3.0)) as scope:
            for step in range(1, 4):
                await asyncio.sleep(scaled(2.0))
                say(f"step {step} done")
    except TimeoutError:
        say(f"timeout: expired {scope.expired()} after {elapsed(start):.1f} s")
    async with asyncio.timeout(scaled(2.5)) as scope:
        await asyncio.sleep(scaled(0.5))
    say(f"in time: expired {scope.expired()}")


async def main():
    say("== 1. an async context manager ==")
    await use_connection()
    await failing_body()
    await cancelled_body()
    say("== 2. an async iterator ==")
    await iterate()
    say("== 3. wait_for ==")
    await wait_for_demo()
    say("== 4. shield ==")
    await shield_demo()
    say("== 5. the timeout scope ==")
    await timeout_demo()


if __name__ == "__main__":
    asyncio.run(main())
