"""Helpers shared by the four tutorial programs, the Python side of
apps/tutorial.h: the time scale read from SP_TIME_SCALE (default 1.0; every
delay is multiplied by it, times are printed unscaled) and a flushing print."""
import os
import sys
import time

SCALE = float(os.environ.get("SP_TIME_SCALE", "1.0"))
if not SCALE > 0:
    sys.exit("SP_TIME_SCALE must be a positive number")


def scaled(seconds):
    return seconds * SCALE


def elapsed(start):
    return (time.monotonic() - start) / SCALE


def say(text):
    print(text, flush=True)
