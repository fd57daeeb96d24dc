#!/usr/bin/env python3
"""Differential HTTP/1.1 probe: sends the same raw requests to Spindle's
apps/hello and to nginx (started here on ephemeral loopback ports, with
locations mirroring hello's routes) and prints, per request, each server's
statuses, whether it closed the connection, and the key framing headers.

    python3 tests/http_diff.py [--hello build/h-diff/hello] [--only TEXT] [-v]

Cell legend: statuses of the responses received (comma-separated), then K
(connection still open), C (closed with FIN), R (reset), T (nothing came back
within the wait); then Connection/Content-Length/Transfer-Encoding/Allow of
the last response. The DIFF column marks S (statuses), C (close behaviour).
Only the standard library is used; every process started is stopped by PID.
"""
import argparse
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    default_type text/plain;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 1m;
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name _;
        root {tmp}/www;
        # hello's GET /: a static file, so that methods it does not serve
        # get the static module's answers (405 for POST).
        location = / {{ rewrite ^ /hello.txt break; }}
        location = /echo {{
            proxy_pass http://127.0.0.1:{echo_port};
            proxy_http_version 1.1;
        }}
        location = /ret {{ return 200 "Hello, World!"; }}
        location / {{ }}
    }}
}}
"""


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """The upstream of nginx's /echo: answers a POST with its body."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def wait_port(port, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_nginx(tmp, echo_port):
    port = free_port()
    os.makedirs(f"{tmp}/www")
    with open(f"{tmp}/www/hello.txt", "w") as f:
        f.write("Hello, World!")
    conf = f"{tmp}/nginx.conf"
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(tmp=tmp, port=port, echo_port=echo_port))
    proc = subprocess.Popen(["nginx", "-p", tmp, "-c", conf], stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def start_hello(path):
    proc = subprocess.Popen([path, "--host", "127.0.0.1", "--port", "0", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r":(\d+)/", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"hello printed {line!r}")
    return proc, int(m.group(1))


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- The requests ---------------------------------------------------------

H = b"Host: t\r\n"
G = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"  # a well-formed request to follow a probe
P = b"POST /echo HTTP/1.1\r\nHost: t\r\n"


def case(label, data, *, heads=(), pause=None):
    """data: bytes, or a list of byte strings sent `pause` seconds apart.
    heads: indexes of responses that answer a HEAD (no body)."""
    parts = data if isinstance(data, list) else [data]
    return {"label": label, "parts": parts, "heads": set(heads), "pause": pause or 0.3}


CASES = [
    # Request line
    case("baseline GET / 1.1", G),
    case("baseline GET / 1.0", b"GET / HTTP/1.0\r\n\r\n"),
    case("lowercase method get", b"get / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("mixed-case method Get", b"Get / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("unknown method PURGE", b"PURGE / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("unknown method FOO", b"FOO / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("method 40 chars", b"A" * 40 + b" / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("method with digit/token char", b"M-SEARCH / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("HTTP/0.9 GET /", b"GET /\r\n"),
    case("HTTP/1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n" + G),
    case("HTTP/1.9", b"GET / HTTP/1.9\r\n" + H + b"\r\n" + G),
    case("HTTP/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n" + G),
    case("HTTP/3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n" + G),
    case("HTTP/0.9 version token", b"GET / HTTP/0.9\r\n" + H + b"\r\n" + G),
    case("HTTP/1.10", b"GET / HTTP/1.10\r\n" + H + b"\r\n" + G),
    case("HTTP/01.1", b"GET / HTTP/01.1\r\n" + H + b"\r\n" + G),
    case("lowercase http/1.1", b"GET / http/1.1\r\n" + H + b"\r\n" + G),
    case("version HTTP/1", b"GET / HTTP/1\r\n" + H + b"\r\n" + G),
    case("garbage version", b"GET / FOO/1.1\r\n" + H + b"\r\n" + G),
    case("'HTTP/1.1 ' trailing space", b"GET / HTTP/1.1 \r\n" + H + b"\r\n" + G),
    case("two spaces method/target", b"GET  / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("two spaces target/version", b"GET /  HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("tab separators", b"GET\t/\tHTTP/1.1\r\n" + H + b"\r\n" + G),
    case("absolute-form, same Host", b"GET http://t/ HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("absolute-form, other Host", b"GET http://other/ HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("absolute-form, no Host", b"GET http://t/ HTTP/1.1\r\n\r\n" + G),
    case("absolute-form https", b"GET https://t/ HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("absolute-form no path", b"GET http://t HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("absolute-form ftp scheme", b"GET ftp://t/ HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("authority-form with GET", b"GET t:80 HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("CONNECT authority-form", b"CONNECT t:443 HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("OPTIONS *", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("GET *", b"GET * HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target with #fragment", b"GET /#frag HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target with raw space", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target with \\x01", b"GET /a\x01b HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target with \\x7f", b"GET /a\x7fb HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target with \\x80", b"GET /a\x80b HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target with %00", b"GET /a%00b HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target with bad %zz", b"GET /a%zz HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target /../ above root", b"GET /../etc HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target /a/../ inside", b"GET /a/../ HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target 9000 bytes", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("empty target", b"GET  HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target without /", b"GET foo HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target query only /?a=1", b"GET /?a=1 HTTP/1.1\r\n" + H + b"\r\n" + G),
    # Headers
    case("no Host on 1.1", b"GET / HTTP/1.1\r\n\r\n" + G),
    case("Host on 1.0", b"GET / HTTP/1.0\r\nHost: t\r\n\r\n"),
    case("two Host same", b"GET / HTTP/1.1\r\nHost: t\r\nHost: t\r\n\r\n" + G),
    case("two Host different", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + G),
    case("Host with space", b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n" + G),
    case("Host with slash", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n" + G),
    case("Host with backslash", b"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n" + G),
    case("Host with port", b"GET / HTTP/1.1\r\nHost: t:80\r\n\r\n" + G),
    case("Host with bad port", b"GET / HTTP/1.1\r\nHost: t:abc\r\n\r\n" + G),
    case("Host IPv6 literal", b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n" + G),
    case("Host with userinfo", b"GET / HTTP/1.1\r\nHost: u@t\r\n\r\n" + G),
    case("Host '..'", b"GET / HTTP/1.1\r\nHost: ..\r\n\r\n" + G),
    case("empty Host", b"GET / HTTP/1.1\r\nHost:\r\n\r\n" + G),
    case("header name with space", b"GET / HTTP/1.1\r\n" + H + b"X Y: z\r\n\r\n" + G),
    case("space before colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n" + G),
    case("header name with underscore", b"GET / HTTP/1.1\r\n" + H + b"X_Y: z\r\n\r\n" + G),
    case("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n" + G),
    case("header without colon", b"GET / HTTP/1.1\r\n" + H + b"Foo\r\n\r\n" + G),
    case("empty header name", b"GET / HTTP/1.1\r\n" + H + b": z\r\n\r\n" + G),
    case("header 10 KiB", b"GET / HTTP/1.1\r\n" + H + b"X: " + b"a" * 10240 + b"\r\n\r\n" + G),
    case("headers 20 KiB total",
         b"GET / HTTP/1.1\r\n" + H + b"".join(b"X%d: %s\r\n" % (i, b"a" * 4000) for i in range(5))
         + b"\r\n" + G),
    case("90 headers", b"GET / HTTP/1.1\r\n" + H
         + b"".join(b"X%d: y\r\n" % i for i in range(90)) + b"\r\n" + G),
    case("150 headers", b"GET / HTTP/1.1\r\n" + H
         + b"".join(b"X%d: y\r\n" % i for i in range(150)) + b"\r\n" + G),
    case("NUL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n" + G),
    case("obs-text in value", b"GET / HTTP/1.1\r\n" + H + b"X: caf\xc3\xa9 \xff\r\n\r\n" + G),
    case("DEL in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x7fb\r\n\r\n" + G),
    case("tab in value", b"GET / HTTP/1.1\r\n" + H + b"X: a\tb\r\n\r\n" + G),
    case("leading space first header", b"GET / HTTP/1.1\r\n " + H + b"\r\n" + G),
    case("bare LF line endings", b"GET / HTTP/1.1\n" + H.replace(b"\r", b"") + b"\n" + G),
    case("bare CR in head", b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n" + G),
    # Framing
    case("POST CL 5", P + b"Content-Length: 5\r\n\r\nhello" + G),
    case("POST no CL no TE", P + b"\r\n" + G),
    case("CL +5", P + b"Content-Length: +5\r\n\r\nhello" + G),
    case("CL 005", P + b"Content-Length: 005\r\n\r\nhello" + G),
    case("CL -1", P + b"Content-Length: -1\r\n\r\n" + G),
    case("CL 0x5", P + b"Content-Length: 0x5\r\n\r\nhello" + G),
    case("CL empty", P + b"Content-Length:\r\n\r\n" + G),
    case("CL 20 digits", P + b"Content-Length: 99999999999999999999\r\n\r\n" + G),
    case("CL twice same", P + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + G),
    case("CL twice different", P + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!" + G),
    case("CL list '5, 5'", P + b"Content-Length: 5, 5\r\n\r\nhello" + G),
    case("CL 2 MiB (> max body)", P + b"Content-Length: 2097152\r\n\r\n" + b"a" * 1000),
    case("CL + TE chunked", P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n" + G),
    case("TE chunked", P + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + G),
    case("TE Chunked (case)", P + b"Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + G),
    case("TE gzip, chunked", P + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n" + G),
    case("TE chunked, gzip", P + b"Transfer-Encoding: chunked, gzip\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n" + G),
    case("TE gzip", P + b"Transfer-Encoding: gzip\r\n\r\nhello" + G),
    case("TE identity", P + b"Transfer-Encoding: identity\r\n\r\nhello" + G),
    case("TE chunked twice", P + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n" + G),
    case("TE chunked on 1.0", b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n"),
    case("chunk extension", P + b"Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n" + G),
    case("chunk ext quoted", P + b"Transfer-Encoding: chunked\r\n\r\n"
         b"5;a=\"b c\"\r\nhello\r\n0\r\n\r\n" + G),
    case("chunk size uppercase A", P + b"Transfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n"
         b"0\r\n\r\n" + G),
    case("chunk size 0005", P + b"Transfer-Encoding: chunked\r\n\r\n0005\r\nhello\r\n0\r\n\r\n" + G),
    case("chunk size overflow", P + b"Transfer-Encoding: chunked\r\n\r\n"
         b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n" + G),
    case("chunk size with space", P + b"Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"
         + G),
    case("chunked missing final CRLF", P + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"),
    case("chunked with trailer", P + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
         b"X-T: 1\r\n\r\n" + G),
    case("chunk data too long", P + b"Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"
         + G),
    case("GET with CL body", b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello" + G),
    case("GET with chunked body", b"GET / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\n" + G),
    case("Expect 100 + body later", [P + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n",
                                     b"hello" + G]),
    case("Expect 100, no body sent", P + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"),
    case("Expect 100 on GET /", b"GET / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n\r\n" + G),
    case("Expect 100 on 1.0", b"POST /echo HTTP/1.0\r\nExpect: 100-continue\r\n"
         b"Content-Length: 5\r\n\r\nhello"),
    case("Expect: something-else", P + b"Expect: something-else\r\nContent-Length: 5\r\n\r\n"
         b"hello" + G),
    case("Expect 100-Continue case", P + b"Expect: 100-Continue\r\nContent-Length: 5\r\n\r\nhello"
         + G),
    case("Connection: close", b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n" + G),
    case("Connection: keep-alive", b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive\r\n\r\n"),
    case("Connection: upgrade", b"GET / HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\n"
         b"Upgrade: h2c\r\n\r\n" + G),
    case("Connection: close, x", b"GET / HTTP/1.1\r\n" + H + b"Connection: x, close\r\n\r\n" + G),
    case("pipelined 3 GET", G * 3),
    case("pipelined POST+GET", P + b"Content-Length: 5\r\n\r\nhello" + G),
    case("pipelined GET+HEAD+GET", G + b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + G, heads=[1]),
    case("HEAD /", b"HEAD / HTTP/1.1\r\n" + H + b"\r\n", heads=[0]),
    case("HEAD on 404", b"HEAD /nope HTTP/1.1\r\n" + H + b"\r\n", heads=[0]),
    case("GET 404", b"GET /nope HTTP/1.1\r\n" + H + b"\r\n"),
    case("OPTIONS /", b"OPTIONS / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("TRACE /", b"TRACE / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("DELETE /", b"DELETE / HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("PUT / with body", b"PUT / HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi" + G),
    case("POST / (GET-only route)", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n\r\nhi" + G),
    case("CRLF before request line", b"\r\n" + G),
    case("3 CRLFs before request line", b"\r\n\r\n\r\n" + G),
    case("bare LF before request line", b"\n" + G),
    case("garbage bytes", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 20),
    case("garbage text line", b"hello there\r\n\r\n" + G),
    case("1.0 keep-alive then 1.0", b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
         b"GET / HTTP/1.0\r\n\r\n"),
    case("1.0 no keep-alive", b"GET / HTTP/1.0\r\n\r\n" + b"GET / HTTP/1.0\r\n\r\n"),
    case("1.0 POST without CL", b"POST /echo HTTP/1.0\r\n\r\nabc"),
    # Combinations touched by the fixes
    case("FOO on unknown path", b"FOO /nope HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("extension method split", [b"\r\nFO", b"O / HTTP/1.1\r\n" + H + b"\r\n" + G]),
    case("extension method + body", b"FOO /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\n"
         b"hello" + G),
    case("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    case("HTTP/1.2 POST with body", b"POST /echo HTTP/1.2\r\n" + H + b"Content-Length: 5\r\n\r\n"
         b"hello" + G),
    case("HTTP/1.2 Connection: close", b"GET / HTTP/1.2\r\n" + H + b"Connection: close\r\n\r\n" + G),
    case("OPTIONS * HTTP/1.0", b"OPTIONS * HTTP/1.0\r\n\r\n"),
    case("absolute-form HTTP://T/", b"GET HTTP://T/ HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("target /?q#f", b"GET /?q#f HTTP/1.1\r\n" + H + b"\r\n" + G),
    case("Host with trailing space", b"GET / HTTP/1.1\r\nHost: t \r\n\r\n" + G),
    case("Host with %41", b"GET / HTTP/1.1\r\nHost: %41b\r\n\r\n" + G),
    case("Host with obs-text", b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n" + G),
    case("Host 'a:'", b"GET / HTTP/1.1\r\nHost: a:\r\n\r\n" + G),
    case("TE ', chunked'", P + b"Transfer-Encoding: , chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + G),
    case("TE gzip on GET", b"GET / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\n" + G),
    case("TE gzip + TE chunked lines", P + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
         b"\r\n5\r\nhello\r\n0\r\n\r\n" + G),
    case("Expect 100 with CL 0", P + b"Expect: 100-continue\r\nContent-Length: 0\r\n\r\n" + G),
    case("CL 5, only 3 sent", P + b"Content-Length: 5\r\n\r\nhel"),
]

# ---- Reading responses -----------------------------------------------------


def exchange(port, c):
    """Sends the case's bytes and collects what comes back until the server
    closes or falls silent. Returns (bytes, how: K/C/R)."""
    s = socket.create_connection(("127.0.0.1", port), 2)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data, how = b"", "K"
    try:
        for i, part in enumerate(c["parts"]):
            if i:
                data += read_some(s, c["pause"])
            try:
                s.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break
        end = time.time() + 3.0
        idle = 0.5
        while time.time() < end:
            s.settimeout(idle)
            try:
                got = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                how = "R"
                break
            if not got:
                how = "C"
                break
            data += got
    finally:
        s.close()
    return data, how


def read_some(s, timeout):
    s.settimeout(timeout)
    out = b""
    try:
        while True:
            got = s.recv(65536)
            if not got:
                break
            out += got
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def parse(data, heads):
    """Splits the bytes into responses: (status, headers dict, body)."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            out.append((-1, {}, data))
            break
        head = data[:end].decode("latin-1").split("\r\n")
        data = data[end + 4:]
        m = re.match(r"HTTP/\d\.\d (\d{3})", head[0])
        status = int(m.group(1)) if m else -1
        hdrs = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            hdrs.setdefault(k.strip().lower(), v.strip())
        body = b""
        if len(out) in heads or status < 200 or status in (204, 304):
            pass
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            while True:
                le = data.find(b"\r\n")
                if le < 0:
                    data = b""
                    break
                size = int(data[:le].split(b";")[0], 16)
                data = data[le + 2:]
                if size == 0:
                    te = data.find(b"\r\n\r\n") if not data.startswith(b"\r\n") else -2
                    data = data[2:] if te == -2 else data[te + 4:]
                    break
                body += data[:size]
                data = data[size + 2:]
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"])
            body, data = data[:n], data[n:]
        else:
            body, data = data, b""
        out.append((status, hdrs, body))
    return out


def cell(resps, how):
    if not resps:
        return ("T" if how == "K" else how), ""
    st = ",".join(str(r[0]) for r in resps)
    h = resps[-1][1]
    keys = [("connection", "conn"), ("content-length", "cl"), ("transfer-encoding", "te"),
            ("allow", "allow")]
    extra = " ".join(f"{short}={h[k]}" for k, short in keys if k in h)
    return f"{st} {how}", extra


def run(ports, cases, verbose):
    def one(c):
        return [exchange(p, c) for p in ports]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, cases))
    ndiff = 0
    print(f"{'#':>3} {'request':<30} {'nginx':<34} {'spindle':<34} diff")
    for i, (c, res) in enumerate(zip(cases, results), 1):
        cells, parsed = [], []
        for data, how in res:
            resps = parse(data, c["heads"])
            parsed.append((resps, how))
            cells.append(cell(resps, how))
        (ns, nh), (ss, sh) = cells
        diff = ""
        if [r[0] for r in parsed[0][0]] != [r[0] for r in parsed[1][0]]:
            diff += "S"
        if parsed[0][1] != parsed[1][1]:
            diff += "C"
        ndiff += bool(diff)
        print(f"{i:>3} {c['label'][:30]:<30} {ns:<12}{nh[:22]:<22} {ss:<12}{sh[:22]:<22} {diff}")
        if verbose:
            for name, (data, how) in zip(("nginx", "spindle"), res):
                print(f"    --- {name} ({how}) ---")
                print("    " + data[:600].decode("latin-1").replace("\r\n", "\n    "))
    print(f"{len(cases)} requests, {ndiff} with differences")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hello", default=os.path.join(ROOT, "build/h-diff/hello"))
    ap.add_argument("--only", help="run the cases whose label holds this text")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the raw responses")
    args = ap.parse_args()
    cases = [c for c in CASES if not args.only or args.only.lower() in c["label"].lower()]

    echo = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix="http_diff.")
    nginx = hello = None
    try:
        nginx, nport = start_nginx(tmp, echo.server_address[1])
        hello, hport = start_hello(args.hello)
        run([nport, hport], cases, args.verbose)
    finally:
        for p in (hello, nginx):
            if p:
                stop(p)
        echo.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
