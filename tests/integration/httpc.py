"""httpc.py — a small raw HTTP/1.1 client for the tests (standard library only).

It keeps the exact bytes: status line, headers in order, the decoded body and
the raw body, and reads SSE streams event by event with arrival times, so tests
can assert on what went over the wire and when.
"""

import json
import re
import socket
import ssl
import time


_SSE_END = re.compile(rb"(\r\n\r\n|\n\n|\r\r)")


class Response:
    def __init__(self):
        self.status = 0
        self.reason = ""
        self.version = ""
        self.headers = []  # [(lowercase name, value)]
        self.body = b""
        self.raw_head = b""
        self.chunked = False

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


class ConnectionClosed(Exception):
    pass


class Conn:
    """One client connection (keep-alive capable)."""

    def __init__(self, port, host="127.0.0.1", tls=None, timeout=15.0, server_hostname="localhost"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname=server_hostname)
        self.buf = bytearray()
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # -- low level -------------------------------------------------------

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            d = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError) as e:
            raise ConnectionClosed(str(e))
        if not d:
            raise ConnectionClosed("eof")
        self.buf += d

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return out
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def is_closed(self, wait=0.0):
        """True if the server closed this connection (EOF or reset) within wait s."""
        self.sock.settimeout(wait if wait > 0 else 0.001)
        try:
            d = self.sock.recv(65536)
            if not d:
                return True
            self.buf += d
            return False
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError, OSError):
            return True
        finally:
            self.sock.settimeout(self.timeout)

    # -- HTTP ------------------------------------------------------------

    def send_request(self, method, path, body=None, headers=None, json_body=None):
        hdrs = [("Host", "127.0.0.1")]
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.append(("Content-Type", "application/json"))
        if body is not None:
            hdrs.append(("Content-Length", str(len(body))))
        if headers:
            names = {k.lower() for k, _ in headers.items()} if isinstance(headers, dict) else {k.lower() for k, _ in headers}
            hdrs = [(k, v) for k, v in hdrs if k.lower() not in names]
            hdrs += list(headers.items()) if isinstance(headers, dict) else list(headers)
        head = "%s %s HTTP/1.1\r\n" % (method, path) + "".join("%s: %s\r\n" % (k, v) for k, v in hdrs) + "\r\n"
        self.send(head.encode("latin-1") + (body or b""))

    def read_head(self, resp=None):
        r = resp or Response()
        line = self._line()
        while line == b"":  # tolerate stray CRLF
            line = self._line()
        r.raw_head = line + b"\r\n"
        parts = line.decode("latin-1").split(" ", 2)
        r.version, r.status = parts[0], int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        while True:
            ln = self._line()
            r.raw_head += ln + b"\r\n"
            if ln == b"":
                break
            bad = [c for c in ln if (c < 0x20 and c != 0x09) or c == 0x7f]
            if bad:
                raise AssertionError("control byte(s) %r in response header line %r" % (bytes(bad), ln))
            k, _, v = ln.decode("latin-1").partition(":")
            r.headers.append((k.strip().lower(), v.strip()))
        r.chunked = "chunked" in (r.header("transfer-encoding") or "").lower()
        return r

    def read_body(self, r, method="GET"):
        if method == "HEAD" or r.status in (204, 304) or 100 <= r.status < 200:
            return r
        if r.chunked:
            body = bytearray()
            for piece in self.iter_chunks():
                body += piece
            r.body = bytes(body)
        elif r.header("content-length") is not None:
            r.body = self._exact(int(r.header("content-length")))
        else:
            body = bytearray(self.buf)
            self.buf.clear()
            while True:
                try:
                    d = self.sock.recv(65536)
                except (ConnectionResetError, ssl.SSLError):
                    break
                if not d:
                    break
                body += d
            r.body = bytes(body)
        return r

    def iter_chunks(self):
        while True:
            size_line = self._line()
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while self._line() != b"":
                    pass
                return
            data = self._exact(size + 2)
            assert data[-2:] == b"\r\n", "bad chunk terminator %r" % data[-2:]
            yield data[:-2]

    def request(self, method, path, body=None, headers=None, json_body=None):
        self.send_request(method, path, body, headers, json_body)
        r = self.read_head()
        return self.read_body(r, method)

    def iter_sse(self, r):
        """Yields (arrival monotonic time, raw event bytes incl. the blank line).
        Events end at a blank line: LF LF, CRLF CRLF or CR CR (the SSE spec)."""
        pending = bytearray()
        source = self.iter_chunks() if r.chunked else self._iter_raw()
        for piece in source:
            pending += piece
            while True:
                m = _SSE_END.search(pending)
                if not m:
                    break
                ev = bytes(pending[: m.end()])
                del pending[: m.end()]
                yield time.monotonic(), ev
        if pending:
            yield time.monotonic(), bytes(pending)  # a partial trailing event

    def _iter_raw(self):
        if self.buf:
            d = bytes(self.buf)
            self.buf.clear()
            yield d
        while True:
            try:
                d = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                return
            if not d:
                return
            yield d


def request(port, method, path, body=None, headers=None, json_body=None, tls=None, timeout=15.0):
    with Conn(port, tls=tls, timeout=timeout) as c:
        hdrs = dict(headers or {})
        hdrs.setdefault("Connection", "close")
        return c.request(method, path, body, hdrs, json_body)


def chat(port, model="m", messages=None, headers=None, **extra):
    body = {"model": model, "messages": messages or [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return request(port, "POST", "/v1/chat/completions", json_body=body, headers=headers)


def stream(port, body, headers=None, timeout=15.0, tls=None, path="/v1/chat/completions"):
    """Sends a streaming chat request; returns (response, [(t, event bytes)], t_sent)."""
    with Conn(port, tls=tls, timeout=timeout) as c:
        hdrs = {"Connection": "close"}
        hdrs.update(headers or {})
        t0 = time.monotonic()
        c.send_request("POST", path, json.dumps(body).encode(),
                       dict(hdrs, **{"Content-Type": "application/json"}))
        r = c.read_head()
        if r.status != 200:
            c.read_body(r, "POST")
            return r, [], t0
        events = list(c.iter_sse(r))
        return r, events, t0


def sse_data(events):
    """The data payloads of SSE events: decoded JSON, or the string '[DONE]'.
    Comment lines (":...") are skipped; "data:" with or without the space."""
    out = []
    for _, ev in events:
        for line in re.split(rb"\r\n|\n|\r", ev):
            if line.startswith(b"data:"):
                d = line[5:]
                if d.startswith(b" "):
                    d = d[1:]
                out.append("[DONE]" if d == b"[DONE]" else json.loads(d))
    return out
