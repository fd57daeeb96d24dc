"""Tasks: create_task, task methods, cancellation with cleanup, wait,
as_completed, and producers and consumers over a queue.

The Python original of apps/03_async_tasks.c; both print the same lines.
SP_TIME_SCALE (default 1.0) multiplies every delay; times are printed unscaled.
"""
import asyncio
import time

from tutorial import elapsed, say, scaled


# ---- 1. create_task, and other work meanwhile ---------------------------------


async def download(name, seconds):
    say(f"  download {name}: start")
    await asyncio.sleep(scaled(seconds))
    say(f"  download {name}: done")
    return len(name) * 1000


async def other_work_meanwhile():
    start = time.monotonic()
    task = asyncio.create_task(download("report.pdf", 2.0))
    say("task created; it starts when main next waits")
    for step in range(1, 4):
        await asyncio.sleep(scaled(0.25))
        say(f"main: other work, step {step}")
    size = await task
    say(f"downloaded {size} bytes; total {elapsed(start):.1f} s")


# ---- 2. Task methods -------------------------------------------------------------


async def task_methods():
    task = asyncio.create_task(download("a.txt", 0.5), name="fetch-a")
    say(f"name: {task.get_name()}, done: {task.done()}")
    await asyncio.sleep(scaled(1.0))
    say(f"done: {task.done()}, cancelled: {task.cancelled()}, result: {task.result()}")
    say(f"cancel() on a finished task: {task.cancel()}")

    task = asyncio.create_task(download("b.iso", 5.0), name="fetch-b")
    await asyncio.sleep(scaled(0.5))
    say(f"cancel(): {task.cancel()}, done right away: {task.done()}")
    try:
        await task
    except asyncio.CancelledError:
        say(f"awaiting it raised CancelledError; cancelled: {task.cancelled()}")


# ---- 3. Cancellation with cleanup ------------------------------------------------


async def worker():
    say("  worker: started")
    try:
        await asyncio.sleep(scaled(10.0))
    except asyncio.CancelledError:
        say("  worker: cancelled, cleaning up")
        await asyncio.sleep(scaled(0.2))  # cleanup may await too
        say("  worker: cleanup done")
        raise  # re-raise: the task must end cancelled
    say("  worker: finished")


async def cancel_with_cleanup():
    start = time.monotonic()
    task = asyncio.create_task(worker())
    await asyncio.sleep(scaled(0.5))
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        say(f"worker cancelled after {elapsed(start):.1f} s")


# ---- 4. wait(FIRST_COMPLETED), then cancel the rest ------------------------------

MIRRORS = [("mirror-eu", 1.5), ("mirror-us", 0.5), ("mirror-asia", 1.0)]


async def fetch_from(name, seconds):
    await asyncio.sleep(scaled(seconds))
    return f"{name} answered after {seconds} s"


async def first_completed():
    start = time.monotonic()
    tasks = [asyncio.create_task(fetch_from(n, s), name=n) for n, s in MIRRORS]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:  # the list, not the sets: sets have no fixed order
        if t in done:
            say(f"first: {t.result()}")
    for t in tasks:
        if t in pending:
            say(f"cancelling {t.get_name()}")
            t.cancel()
    await asyncio.wait(pending)  # let the cancellations finish
    for t in tasks:
        say(f"{t.get_name()}: cancelled {t.cancelled()}")
    say(f"wait: finished in {elapsed(start):.1f} s")


# ---- 5. as_completed ----------------------------------------------------------------


async def in_completion_order():
    start = time.monotonic()
    tasks = [asyncio.create_task(fetch_from(n, s)) for n, s in MIRRORS]
    for next_done in asyncio.as_completed(tasks):
        result = await next_done
        say(f"{elapsed(start):.1f} s: {result}")


# ---- 6. Producers and consumers over a queue ------------------------------------


async def producer(queue, n, first_delay):
    loop = asyncio.get_running_loop()
    at = loop.time() + scaled(first_delay)
    for i in range(1, 4):
        # Sleeping until a point in time rather than for a duration keeps a
        # steady pace: a late wake-up does not delay the items after it.
        await asyncio.sleep(at - loop.time())
        item = f"item {n}-{i}"
        await queue.put(item)
        say(f"producer {n}: put {item}")
        at += scaled(1.0)


async def consumer(queue, n):
    try:
        while True:
            item = await queue.get()
            try:
                say(f"  consumer {n}: got {item}")
                await asyncio.sleep(scaled(0.1))  # process it
            finally:
                queue.task_done()  # even if cancelled, so join() cannot hang
    except asyncio.CancelledError:
        say(f"  consumer {n}: stopping")
        raise


async def producers_and_consumers():
    start = time.monotonic()
    queue = asyncio.Queue()
    consumers = [asyncio.create_task(consumer(queue, n)) for n in range(1, 4)]
    producers = [asyncio.create_task(producer(queue, 1, 0.25)),
                 asyncio.create_task(producer(queue, 2, 0.75))]
    await asyncio.gather(*producers)
    await queue.join()  # every item put has been marked task_done
    say(f"all items processed in {elapsed(start):.1f} s")
    for c in consumers:  # they wait in get() forever: cancel them
        c.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)
    say("consumers stopped")


async def main():
    say("== 1. create_task ==")
    await other_work_meanwhile()
    say("== 2. task methods ==")
    await task_methods()
    say("== 3. cancellation with cleanup ==")
    await cancel_with_cleanup()
    say("== 4. wait for the first, cancel the rest ==")
    await first_completed()
    say("== 5. as_completed ==")
    await in_completion_order()
    say("== 6. producers and consumers ==")
    await producers_and_consumers()


if __name__ == "__main__":
    asyncio.run(main())
