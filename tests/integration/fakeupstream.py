#!/usr/bin/python3
"""fakeupstream.py — a scripted fake OpenAI-compatible upstream for umbra's tests.

Standard library only. It speaks raw HTTP/1.1 over asyncio streams (keep-alive,
Content-Length and chunked request bodies), on TCP, TLS or a unix socket, and
answers like the OpenAI API does:

  POST /v1/chat/completions   chat.completion JSON, or SSE chat.completion.chunk
                              events; the final usage chunk (choices: []) only when
                              the request had stream_options.include_usage true;
                              then "data: [DONE]".
  POST /v1/embeddings         a list of embedding objects + usage
  GET  /v1/models             a model list (also what health checks hit)

Every request is recorded (method, path, headers, exact body bytes, connection,
arrival time, and when the peer closed the connection) so tests can assert on the
exact bytes the gateway sent.

Scripting, per test (in-process use, see FakeUpstream):
  fake.script(Behavior(...), ...)   queue: one Behavior per POST request, in order
  fake.default = Behavior(...)      used when the queue is empty
  fake.handler = fn(req) -> Behavior | None   decides per request (first)
  fake.health_status = 503          what the health path answers (GET)

Scripting from outside (the SDK tests run this file as a subprocess): the last
user message's content "fake:status=429,retry_after=7" or
"fake:content=hello world" etc. sets the Behavior's fields for that request;
"fake:tools=2" makes the answer two parallel get_weather calls.

CLI:  python3 fakeupstream.py --port N [--host 127.0.0.1] [--unix PATH]
                              [--tls-cert F --tls-key F] [--content TEXT]
                              [--set NAME=JSON]...   (attributes the wire fakes read)
                              [--vertex-sa PATH]     (a service account for the vertex fake)
      prints "READY <port-or-path>" on stdout once listening.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import threading
import time

CREATED = 1700000000


class Behavior:
    """How the fake answers one request. Every field has a faithful default.

    status         HTTP status (200; 429/500/503... give an OpenAI error body)
    retry_after    value of a retry-after header (str/int) or None
    content        assistant text; streamed as one chunk per word
    chunks         explicit list of content pieces for streaming (overrides content)
    prompt_tokens, completion_tokens   usage numbers reported
    first_byte_delay  seconds before anything is written
    pause_after    stream: pause after this many content chunks were sent
    pause          stream: seconds of that pause
    chunk_interval stream: seconds between every event
    disconnect_after  stream: close the connection (no [DONE]) after this many
                   content chunks
    close_without_answer  read the request, then close
    hang           read the request, never answer (until the peer closes)
    garbage        answer 200 with a body that is not JSON (or SSE)
    body           raw body bytes to send as is (with status/content_type)
    content_type   override Content-Type
    headers        extra response headers {name: value}
    chunked        non-stream: send the body with Transfer-Encoding: chunked
    model          model name to report (default: the request's model)
    usage_in_stream  False: do not send the usage chunk even when asked
    close_after    close the connection after the response (no keep-alive)
    stall_body     send the head and half the body, then stall until the peer closes
    truncate_body  send the head (full Content-Length) and half the body, then close
    sse_raw        stream: send exactly these byte strings (one write each,
                   sse_interval s apart) as the SSE body instead of generated events
    tool_calls     the assistant calls tools instead of answering: a list of
                   {"id", "name", "arguments"} (arguments: a JSON text); every
                   wire format renders them its own way (parallel calls included)
    cached_tokens  prompt tokens reported as read from the prompt cache
    """

    def __init__(self, **kw):
        self.status = 200
        self.retry_after = None
        self.content = "Hello from the fake upstream."
        self.chunks = None
        self.prompt_tokens = 11
        self.completion_tokens = 7
        self.first_byte_delay = 0.0
        self.pause_after = None
        self.pause = 0.0
        self.chunk_interval = 0.0
        self.disconnect_after = None
        self.close_without_answer = False
        self.hang = False
        self.garbage = False
        self.body = None
        self.content_type = None
        self.headers = {}
        self.chunked = False
        self.model = None
        self.usage_in_stream = True
        self.close_after = False
        self.stall_body = False
        self.sse_raw = None
        self.sse_interval = 0.02
        self.truncate_body = False
        self.tool_calls = None
        self.cached_tokens = 0
        for k, v in kw.items():
            if not hasattr(self, k):
                raise TypeError("unknown Behavior field %r" % k)
            setattr(self, k, v)

    @staticmethod
    def from_magic(text):
        """Parses "fake:key=value,key=value" (values: int, float, true/false, text)."""
        kw = {}
        for part in text[len("fake:"):].split(","):
            if "=" not in part:
                continue
            k, v = part.split("=", 1)
            k = k.strip()
            if v in ("true", "false"):
                val = v == "true"
            else:
                try:
                    val = int(v)
                except ValueError:
                    try:
                        val = float(v)
                    except ValueError:
                        val = v
            kw[k] = val
        n_tools = kw.pop("tools", 0)
        if n_tools:  # "tools=N": N parallel get_weather calls
            cities = ["Paris", "Oslo", "Lima", "Kyiv"]
            kw["tool_calls"] = [{"id": "call_fake%d" % i, "name": "get_weather",
                                 "arguments": json.dumps({"city": cities[i % 4]})} for i in range(n_tools)]
        return Behavior(**kw)


class Request:
    """One request as received: exact bytes and metadata."""

    def __init__(self):
        self.method = ""
        self.target = ""
        self.path = ""
        self.version = ""
        self.headers = []  # [(lowercase name, value)] in order
        self.raw_head = b""
        self.body = b""
        self.conn_id = 0
        self.received_at = 0.0
        self.closed_at = None  # monotonic time the peer closed the connection
        self.response_done_at = None
        self.sent_body = b""     # the response body the fake sent (non-stream)
        self.sent_events = []    # the SSE events the fake sent, in order
        self.sent_status = None

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Request %s %s %d bytes conn=%d>" % (self.method, self.target, len(self.body), self.conn_id)


class _Conn:
    """One accepted connection: a reader task fills buf; EOF is noticed at once
    (even while a response is being paused) so tests can see cancellations."""

    def __init__(self, fake, reader, writer, conn_id):
        self.fake = fake
        self.reader = reader
        self.writer = writer
        self.id = conn_id
        self.buf = bytearray()
        self.eof = False
        self.closed_at = None
        self.cond = asyncio.Event()
        self.current = None  # Request being answered
        self.id_served = False

    async def pump(self):
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.buf += data
                self.cond.set()
        except (ConnectionError, OSError, ssl.SSLError, asyncio.CancelledError):
            pass
        self.eof = True
        self.closed_at = time.monotonic()
        if self.current is not None and self.current.closed_at is None:
            self.current.closed_at = self.closed_at
        self.cond.set()

    async def _wait_data(self):
        self.cond.clear()
        if self.eof:
            return False
        await self.cond.wait()
        return True

    async def read_until(self, sep, limit=1 << 20):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[: i + len(sep)])
                del self.buf[: i + len(sep)]
                return out
            if len(self.buf) > limit:
                raise ValueError("line too long")
            if self.eof or not await self._wait_data():
                if self.buf.find(sep) >= 0:
                    continue
                return None

    async def read_exact(self, n):
        while len(self.buf) < n:
            if self.eof or not await self._wait_data():
                if len(self.buf) >= n:
                    break
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def sleep_or_closed(self, seconds):
        """Sleeps; returns False early if the peer closed the connection."""
        end = time.monotonic() + seconds
        while not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                return True
            try:
                await asyncio.wait_for(self._closed_wait(), left)
            except asyncio.TimeoutError:
                return True
        return False

    async def wait_data(self, seconds):
        """True when data is buffered within seconds; False on timeout or EOF."""
        end = time.monotonic() + seconds
        while not self.buf and not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.cond.clear()
            try:
                await asyncio.wait_for(self.cond.wait(), left)
            except asyncio.TimeoutError:
                return bool(self.buf)
        return bool(self.buf)

    async def _closed_wait(self):
        while not self.eof:
            self.cond.clear()
            await self.cond.wait()


class FakeUpstream:
    """A fake OpenAI-compatible server on its own event loop thread.

    FakeUpstream(port=0) → TCP on 127.0.0.1; unix_path=... → unix socket;
    tls=(certfile, keyfile) → HTTPS. start() returns self; .port, .url.
    """

    def __init__(self, host="127.0.0.1", port=0, unix_path=None, tls=None, name="fake"):
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.tls = tls
        self.name = name
        self.requests = []          # every request except health checks
        self.health_requests = []   # GETs of health_path
        self.health_path = "/v1/models"
        self.health_status = 200
        self.health_delay = 0.0
        self.idle_timeout = None    # close a keep-alive connection idle this long (s)
        self.default = Behavior()
        self.handler = None
        self._queue = []
        self._lock = threading.Lock()
        self.connections = 0
        self.open_connections = 0
        self._conns = set()
        self._conn_seq = 0
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()
        self._start_error = None

    # -- control (any thread) --------------------------------------------

    @property
    def url(self):
        if self.unix_path:
            return "unix://" + self.unix_path
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def script(self, *behaviors):
        with self._lock:
            self._queue.extend(behaviors)

    def posts(self, path=None):
        return [r for r in list(self.requests)
                if r.method == "POST" and (path is None or r.path == path)]

    def chats(self):
        return self.posts("/v1/chat/completions")

    def last(self):
        return self.requests[-1]

    def clear(self):
        self.requests.clear()
        self.health_requests.clear()

    def wait_for(self, pred, timeout=5.0, interval=0.02):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(interval)
        return pred()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="fake-" + self.name, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._start_error:
            raise self._start_error
        return self

    def stop(self):
        """Stops listening and closes every connection (later connects are refused)."""
        if self._loop is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            fut.result(5)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop = None
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass

    def restart(self):
        """Listens again on the same port / path (after stop())."""
        self._ready = threading.Event()
        return self.start()

    # -- server ------------------------------------------------------------

    def _run(self):
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._listen())
        except Exception as e:  # noqa: BLE001
            self._start_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            except Exception:
                pass
            self._loop.close()

    async def _listen(self):
        sslctx = None
        if self.tls:
            sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            sslctx.load_cert_chain(self.tls[0], self.tls[1])
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass
            self._server = await asyncio.start_unix_server(self._serve, path=self.unix_path, ssl=sslctx, limit=1 << 24)
        else:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=sslctx,
                                                      reuse_address=True, limit=1 << 24, backlog=2048)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self):
        self._server.close()
        for c in list(self._conns):
            try:
                c.writer.transport.abort()
            except Exception:
                pass
        await asyncio.sleep(0.05)

    async def _serve(self, reader, writer):
        self._conn_seq += 1
        self.connections += 1
        self.open_connections += 1
        conn = _Conn(self, reader, writer, self._conn_seq)
        self._conns.add(conn)
        pump = asyncio.ensure_future(conn.pump())
        try:
            while True:
                if self.idle_timeout is not None and conn.id_served and not conn.buf:
                    if not await conn.wait_data(self.idle_timeout):
                        break  # idle too long: close, as upstream servers do
                req = await self._read_request(conn)
                if req is None:
                    break
                keep = await self._respond(conn, req)
                conn.id_served = True
                req.response_done_at = time.monotonic()
                conn.current = None
                if not keep:
                    break
        except (ConnectionError, OSError, ssl.SSLError, ValueError):
            pass
        finally:
            self.open_connections -= 1
            self._conns.discard(conn)
            try:
                writer.close()
            except Exception:
                pass
            pump.cancel()

    async def _read_request(self, conn):
        head = await conn.read_until(b"\r\n\r\n")
        if head is None:
            return None
        req = Request()
        req.raw_head = head
        req.conn_id = conn.id
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) != 3:
            raise ValueError("bad request line %r" % lines[0])
        req.method, req.target, req.version = parts
        req.path = req.target.split("?", 1)[0]
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            req.headers.append((k.strip().lower(), v.strip()))
        te = (req.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            body = bytearray()
            while True:
                size_line = await conn.read_until(b"\r\n")
                if size_line is None:
                    return None
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers until empty line
                    while True:
                        t = await conn.read_until(b"\r\n")
                        if t is None or t == b"\r\n":
                            break
                    break
                data = await conn.read_exact(size + 2)
                if data is None:
                    return None
                body += data[:-2]
            req.body = bytes(body)
        else:
            n = int(req.header("content-length") or 0)
            if n:
                data = await conn.read_exact(n)
                if data is None:
                    return None
                req.body = data
        req.received_at = time.monotonic()
        conn.current = req
        if conn.eof and not conn.buf:
            req.closed_at = conn.closed_at
        if req.method == "GET" and req.path == self.health_path:
            self.health_requests.append(req)
        else:
            self.requests.append(req)
        return req

    def _behavior_for(self, req):
        if self.handler is not None:
            b = self.handler(req)
            if b is not None:
                return b
        if req.method == "POST":
            with self._lock:
                if self._queue:
                    return self._queue.pop(0)
            magic = _magic_text(req.body)
            if magic is not None:
                return Behavior.from_magic(magic)
        return self.default

    # -- responses ---------------------------------------------------------

    async def _write(self, conn, data):
        conn.writer.write(data)
        await conn.writer.drain()

    async def _send(self, conn, status, headers, body, chunked=False, close=False):
        if conn.current is not None:
            conn.current.sent_body = body
            conn.current.sent_status = status
        reason = _REASONS.get(status, "Status")
        out = ["HTTP/1.1 %d %s" % (status, reason)]
        hdrs = dict((k.lower(), (k, v)) for k, v in headers)
        if not chunked:
            out.append("Content-Length: %d" % len(body))
        else:
            out.append("Transfer-Encoding: chunked")
        for _, (k, v) in hdrs.items():
            out.append("%s: %s" % (k, v))
        out.append("Date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        if close:
            out.append("Connection: close")
        data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
        stall = conn.current is not None and getattr(conn.current, "stall", False)
        if conn.current is not None and getattr(conn.current, "truncate", False):
            await self._write(conn, data + body[: len(body) // 2])
            conn.writer.transport.abort()
            raise ConnectionError("truncated")
        if stall:
            await self._write(conn, data + body[: len(body) // 2])
            while not conn.eof:
                await conn.sleep_or_closed(3600)
            raise ConnectionError("stalled")
        if not chunked:
            await self._write(conn, data + body)
        else:
            half = len(body) // 2
            await self._write(conn, data + _chunk(body[:half]))
            await self._write(conn, _chunk(body[half:]) + b"0\r\n\r\n")

    async def _respond(self, conn, req):
        """Answers one request; returns whether to keep the connection."""
        if req.method == "GET" and req.path == self.health_path:
            if self.health_delay and not await conn.sleep_or_closed(self.health_delay):
                return False
            if self.health_status == "close":
                return False
            st = int(self.health_status)
            body = _models_body() if st == 200 else _error_body(st)
            await self._send(conn, st, [("Content-Type", "application/json")], body)
            return _keepalive(req)

        b = self._behavior_for(req)
        wire = _wire_for(req)
        if b.close_without_answer:
            return False
        if b.hang:
            while not conn.eof:
                await conn.sleep_or_closed(3600)
            return False
        if b.first_byte_delay and not await conn.sleep_or_closed(b.first_byte_delay):
            return False
        keep = _keepalive(req) and not b.close_after
        req.stall = b.stall_body
        req.truncate = b.truncate_body
        extra = list(b.headers.items())
        if b.retry_after is not None:
            extra.append(("retry-after", str(b.retry_after)))

        if b.body is not None:
            ct = b.content_type or "application/json"
            await self._send(conn, b.status, [("Content-Type", ct)] + extra, b.body, b.chunked, not keep)
            return keep
        if b.garbage:
            ct = b.content_type or "application/json"
            await self._send(conn, b.status, [("Content-Type", ct)] + extra,
                             b"<html>\x00\xff garbage {{{ not json", b.chunked, not keep)
            return keep
        if b.status != 200:
            ct = b.content_type or "application/json"
            body = _error_body(b.status)
            if wire is not None:
                ct, body, more = wire.error_body(b.status)
                extra = extra + list(more)
            await self._send(conn, b.status, [("Content-Type", ct)] + extra, body, b.chunked, not keep)
            return keep
        if wire is not None:
            return await wire.respond(self, conn, req, b, keep, extra)

        try:
            payload = json.loads(req.body) if req.body else {}
        except ValueError:
            await self._send(conn, 400, [("Content-Type", "application/json")], _error_body(400), False, not keep)
            return keep
        if not isinstance(payload, dict):
            payload = {}
        model = b.model or payload.get("model") or "fake-model"
        if req.path == "/v1/embeddings":
            body = _embeddings_body(payload, model, b)
            await self._send(conn, 200, [("Content-Type", b.content_type or "application/json")] + extra,
                             body, b.chunked, not keep)
            return keep
        if req.path == "/v1/models" and req.method == "GET":
            await self._send(conn, 200, [("Content-Type", "application/json")] + extra, _models_body(), b.chunked, not keep)
            return keep
        if req.path != "/v1/chat/completions":
            await self._send(conn, 404, [("Content-Type", "application/json")], _error_body(404), False, not keep)
            return keep

        cid = "chatcmpl-fake%06d" % len(self.requests)
        if not payload.get("stream"):
            message = {"role": "assistant", "content": b.content, "refusal": None}
            if b.tool_calls:
                message["content"] = None
                message["tool_calls"] = [{"id": t["id"], "type": "function",
                                          "function": {"name": t["name"], "arguments": t["arguments"]}}
                                         for t in b.tool_calls]
            body = json.dumps({
                "id": cid, "object": "chat.completion", "created": CREATED, "model": model,
                "choices": [{"index": 0, "message": message,
                             "logprobs": None, "finish_reason": "tool_calls" if b.tool_calls else "stop"}],
                "usage": _usage(b),
                "system_fingerprint": "fp_fake",
            }, separators=(",", ":")).encode()
            await self._send(conn, 200, [("Content-Type", b.content_type or "application/json")] + extra,
                             body, b.chunked, not keep)
            return keep

        # streaming
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        events = stream_events(cid, model, b, include_usage)
        head = ["HTTP/1.1 200 OK", "Content-Type: " + (b.content_type or "text/event-stream; charset=utf-8"),
                "Transfer-Encoding: chunked", "Cache-Control: no-cache"]
        for k, v in extra:
            head.append("%s: %s" % (k, v))
        if not keep:
            head.append("Connection: close")
        req.sent_status = 200
        await self._write(conn, ("\r\n".join(head) + "\r\n\r\n").encode())
        if b.sse_raw is not None:
            for piece in b.sse_raw:
                if not await conn.sleep_or_closed(b.sse_interval):
                    return False
                await self._write(conn, _chunk(piece))
                req.sent_events.append(piece)
            await self._write(conn, b"0\r\n\r\n")
            return keep
        n_content = 0
        for kind, ev in events:
            if b.chunk_interval and not await conn.sleep_or_closed(b.chunk_interval):
                return False
            await self._write(conn, _chunk(ev))
            req.sent_events.append(ev)
            if kind == "content":
                n_content += 1
                if b.disconnect_after is not None and n_content >= b.disconnect_after:
                    conn.writer.transport.abort()
                    return False
                if b.pause_after is not None and n_content == b.pause_after and b.pause:
                    if not await conn.sleep_or_closed(b.pause):
                        return False
        await self._write(conn, b"0\r\n\r\n")
        return keep


def stream_events(cid, model, b, include_usage):
    """The SSE events (kind, bytes) a real OpenAI stream would send."""
    pieces = b.chunks
    if pieces is None:
        words = b.content.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]

    def chunk(delta, finish=None, choices=True):
        d = {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": model,
             "system_fingerprint": "fp_fake"}
        if choices:
            d["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if include_usage:
            d["usage"] = None
        return ("data: " + json.dumps(d, separators=(",", ":")) + "\n\n").encode()

    out = [("role", chunk({"role": "assistant", "content": "", "refusal": None}))]
    if b.tool_calls:
        # each call: its id and name, then the arguments in two fragments
        for i, t in enumerate(b.tool_calls):
            out.append(("content", chunk({"tool_calls": [{"index": i, "id": t["id"], "type": "function",
                                                          "function": {"name": t["name"], "arguments": ""}}]})))
            a = t["arguments"]
            for frag in (a[:len(a) // 2], a[len(a) // 2:]):
                out.append(("content", chunk({"tool_calls": [{"index": i, "function": {"arguments": frag}}]})))
        out.append(("finish", chunk({}, "tool_calls")))
    else:
        for p in pieces:
            out.append(("content", chunk({"content": p})))
        out.append(("finish", chunk({}, "stop")))
    if include_usage and b.usage_in_stream:
        d = {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": model,
             "system_fingerprint": "fp_fake", "choices": [], "usage": _usage(b)}
        out.append(("usage", ("data: " + json.dumps(d, separators=(",", ":")) + "\n\n").encode()))
    out.append(("done", b"data: [DONE]\n\n"))
    return out


def _usage(b):
    u = {"prompt_tokens": b.prompt_tokens, "completion_tokens": b.completion_tokens,
         "total_tokens": b.prompt_tokens + b.completion_tokens}
    if b.cached_tokens:
        u["prompt_tokens_details"] = {"cached_tokens": b.cached_tokens}
    return u


def _embeddings_body(payload, model, b):
    inp = payload.get("input")
    items = inp if isinstance(inp, list) and inp and not isinstance(inp[0], int) else [inp]
    data = []
    for i, _ in enumerate(items):
        data.append({"object": "embedding", "index": i,
                     "embedding": [round(0.001 * (i + 1) * (k + 1), 6) for k in range(8)]})
    return json.dumps({"object": "list", "data": data, "model": model,
                       "usage": {"prompt_tokens": b.prompt_tokens, "total_tokens": b.prompt_tokens}},
                      separators=(",", ":")).encode()


def _models_body():
    return json.dumps({"object": "list", "data": [
        {"id": "fake-model", "object": "model", "created": CREATED, "owned_by": "fake"}]}).encode()


def _error_body(status):
    kinds = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
             404: ("invalid_request_error", "model_not_found"), 429: ("requests", "rate_limit_exceeded"),
             500: ("server_error", None), 502: ("server_error", None), 503: ("server_error", None)}
    t, c = kinds.get(status, ("server_error", None))
    return json.dumps({"error": {"message": "fake upstream says %d" % status, "type": t,
                                 "param": None, "code": c}}).encode()


def _chunk(data):
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _keepalive(req):
    c = (req.header("connection") or "").lower()
    if req.version == "HTTP/1.0":
        return "keep-alive" in c
    return "close" not in c


def _magic_text(body):
    """The "fake:..." text of the last message, whatever the wire format:
    OpenAI/Anthropic/Ollama messages[].content (a string or text blocks),
    Bedrock messages[].content[].text, Gemini contents[].parts[].text."""
    try:
        p = json.loads(body)
        msgs = p.get("messages") or p.get("contents") or []
        if msgs:
            last = msgs[-1]
            c = last.get("content", last.get("parts"))
            texts = [c] if isinstance(c, str) else [
                blk.get("text") for blk in (c or []) if isinstance(blk, dict)]
            for t in texts:
                if isinstance(t, str) and t.startswith("fake:"):
                    return t
        inp = p.get("input")
        if isinstance(inp, str) and inp.startswith("fake:"):
            return inp
    except Exception:  # noqa: BLE001
        return None
    return None


# Wire formats other than OpenAI's: each module (fakewire_<type>.py) has
#   match(req) -> bool                      is this request in its format?
#   error_body(status) -> (content_type, body bytes, [(header, value)])
#   async respond(fake, conn, req, b, keep, extra) -> keep
# and checks what the gateway sent (headers, signatures) before answering.
_WIRES = []


def _wire_for(req):
    if not _WIRES:
        import importlib
        for name in ("anthropic", "bedrock", "vertex", "ollama", "azure"):
            try:
                _WIRES.append(importlib.import_module("fakewire_" + name))
            except ImportError:
                pass
    for w in _WIRES:
        if w.match(req):
            return w
    return None


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 413: "Payload Too Large",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--unix")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--content", help="default assistant text")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                    help="set an attribute the wire fakes read (e.g. expect_api_key=\"k\")")
    ap.add_argument("--vertex-sa", metavar="PATH",
                    help="make a service account whose tokens this fake issues at /token; write its key file")
    a = ap.parse_args(argv)
    tls = (a.tls_cert, a.tls_key) if a.tls_cert else None
    fake = FakeUpstream(host=a.host, port=a.port, unix_path=a.unix, tls=tls, name="cli")
    if a.content:
        fake.default = Behavior(content=a.content)
    for kv in a.set:
        name, val = kv.split("=", 1)
        setattr(fake, name, json.loads(val))
    fake.start()
    if a.vertex_sa:
        import fakewire_vertex
        fake.vertex_auth = fakewire_vertex.ServiceAccount(fake.url + "/token")
        fake.vertex_auth.write(a.vertex_sa)
    print("READY %s" % (a.unix or fake.port), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    while not done.wait(0.5):
        if os.getppid() == 1:  # parent died: do not linger
            break
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
