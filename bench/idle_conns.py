#!/usr/bin/env python3
"""Server memory per idle keep-alive connection, for bench/http.sh.

Opens COUNT connections to 127.0.0.1:PORT, sends one request on each and
reads its response, leaves them all open and idle, and prints how much the
server's resident memory (Rss and Pss from /proc/PID/smaps_rollup) grew per
connection: `rss_bytes_per_conn N` and `pss_bytes_per_conn N` on stdout,
details on stderr. Exits non-zero if a connection fails or is closed early.

--window sets how many connections are being opened and answered at once.
A server may keep what its busy connections used (task stacks, buffers)
after they go idle, so a wide window adds that burst's leftovers to the
figure; the default of 16 measures the idle connections themselves.
"""
import argparse
import errno
import resource
import select
import socket
import struct
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def rollup(pid):
    """Rss, Pss... of the whole process in bytes."""
    vals = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                vals[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return vals


def response_complete(buf):
    """True once buf holds a whole 200 response with a Content-Length."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].lower()
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"unexpected status {status.decode()}")
    i = head.find(b"\r\ncontent-length:")
    if i < 0:
        raise RuntimeError("response without Content-Length")
    length = int(head[i + 17 :].split(b"\r\n", 1)[0])
    return len(buf) >= end + 4 + length


def open_answered(port, count, window, deadline):
    """Returns count sockets, each having had one request answered. At most
    window connections are in progress at once, so the server's listen
    backlog never overflows (a dropped SYN costs a 1 s retransmit)."""
    ep = select.epoll()
    inflight = {}  # fd -> [socket, response bytes or None while connecting]
    done = []
    started = 0
    while len(done) < count:
        while started < count and len(inflight) < window:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(("127.0.0.1", port))
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
            inflight[s.fileno()] = [s, None]
            ep.register(s.fileno(), select.EPOLLOUT)
            started += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(done)} of {count} connections answered in time")
        for fd, _ in ep.poll(1.0):
            ent = inflight[fd]
            s = ent[0]
            if ent[1] is None:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, f"connect: {errno.errorcode.get(err, err)}")
                s.send(REQUEST)
                ent[1] = b""
                ep.modify(fd, select.EPOLLIN)
                continue
            data = s.recv(4096)
            if not data:
                raise RuntimeError("server closed a connection before answering")
            ent[1] += data
            if response_complete(ent[1]):
                ep.unregister(fd)
                del inflight[fd]
                done.append(s)
    ep.close()
    return done


def still_open(socks):
    """How many sockets have neither data nor an end of stream pending."""
    p = select.poll()
    for s in socks:
        p.register(s.fileno(), select.POLLIN | select.POLLRDHUP)
    return len(socks) - len(p.poll(0))


def warm_up(port, n):
    """A few connections answered and closed, so code pages and the
    allocator's first arenas are in place before the baseline."""
    for s in open_answered(port, n, n, time.monotonic() + 10):
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pid", type=int, required=True, help="the server's process id")
    ap.add_argument("--port", type=int, required=True, help="the server's port on 127.0.0.1")
    ap.add_argument("--count", type=int, default=10000, help="idle connections (10000)")
    ap.add_argument("--window", type=int, default=16, help="connections opened at once (16)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds idle before measuring (1)")
    ap.add_argument("--timeout", type=float, default=40.0, help="seconds to open them all (40)")
    args = ap.parse_args()

    need = args.count + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError):
            sys.exit(f"idle_conns: need {need} file descriptors, hard limit is {hard}")

    warm_up(args.port, 16)
    time.sleep(0.2)
    before = rollup(args.pid)
    t0 = time.monotonic()
    socks = open_answered(args.port, args.count, args.window, t0 + args.timeout)
    opened = time.monotonic() - t0
    time.sleep(args.settle)
    after = rollup(args.pid)
    alive = still_open(socks)
    for s in socks:
        # Reset instead of FIN: no TIME_WAIT left behind on 10,000 ports.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    n = args.count
    print(
        f"idle_conns: {n} connections opened and answered in {opened:.2f} s, "
        f"{alive} still open; Rss {before['Rss'] // 1024} -> {after['Rss'] // 1024} KiB, "
        f"Pss {before['Pss'] // 1024} -> {after['Pss'] // 1024} KiB",
        file=sys.stderr,
    )
    if alive != n:
        sys.exit(f"idle_conns: the server closed {n - alive} idle connections early")
    print(f"rss_bytes_per_conn {(after['Rss'] - before['Rss']) / n:.0f}")
    print(f"pss_bytes_per_conn {(after['Pss'] - before['Pss']) / n:.0f}")



if __name__ == "__main__":
    main()
