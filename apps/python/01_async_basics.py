"""Async basics: a first coroutine, sequential versus concurrent, chaining.

The Python original of apps/01_async_basics.c; both print the same lines.
SP_TIME_SCALE (default 1.0) multiplies every delay; times are printed unscaled.
"""
import asyncio
import time

from tutorial import elapsed, say, scaled


# ---- 1. A first coroutine ----------------------------------------------------


async def hello():
    say("hello ...")
    await asyncio.sleep(scaled(1.0))  # suspends hello() only; the loop is free meanwhile
    say("... world")


# ---- 2. Sequential versus concurrent ----------------------------------------


async def job(name, seconds):
    say(f"{name}: start")
    await asyncio.sleep(scaled(seconds))
    return f"{name}: done"


NAMES = ["brew coffee", "toast bread", "fry eggs"]


async def sequential():
    start = time.monotonic()
    for name in NAMES:
        say(await job(name, 2.0))  # each await finishes before the next starts
    say(f"sequential: finished in {elapsed(start):.1f} s")


async def concurrent():
    start = time.monotonic()
    tasks = [asyncio.create_task(job(name, 2.0)) for name in NAMES]
    for task in tasks:
        say(await task)  # all three sleep at the same time
    say(f"concurrent: finished in {elapsed(start):.1f} s")


# ---- 3. Chaining awaits -------------------------------------------------------


async def lookup_user_id(login):
    say(f"  lookup_user_id({login!r})")
    await asyncio.sleep(scaled(0.5))
    return 42


async def load_profile(login):
    say(f"  load_profile({login!r})")
    user_id = await lookup_user_id(login)
    await asyncio.sleep(scaled(0.5))
    return f"user #{user_id} ({login})"


async def render_page(login):
    say(f"  render_page({login!r})")
    profile = await load_profile(login)
    return f"<h1>{profile}</h1>"


async def chaining():
    start = time.monotonic()
    page = await render_page("ada")
    say(f"page: {page}")
    say(f"chain: finished in {elapsed(start):.1f} s")


async def main():
    say("== 1. a first coroutine ==")
    await hello()
    say("== 2. sequential versus concurrent ==")
    await sequential()
    await concurrent()
    say("== 3. chaining awaits ==")
    await chaining()


if __name__ == "__main__":
    asyncio.run(main())
