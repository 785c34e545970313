#!/usr/bin/env bash
# valgrind.sh — "valgrind on a 10k-request run shows no leak".
#
# Starts the scripted fake upstream (tests/integration/fakeupstream.py) and
# build/umbra under valgrind memcheck on free 127.0.0.1 ports, sends N
# requests (default 10000) over keep-alive connections — non-stream and
# streamed chat, embeddings, /v1/models, /health, /metrics, 404/405/400s,
# unknown models, upstream 500/429/garbage/mid-stream disconnects, large and
# chunked request bodies, clients that hang up mid-stream, translated requests
# (OpenAI clients on anthropic-, ollama- and bedrock-type models, Anthropic
# clients on /v1/messages, streams cut mid-way) — while the config
# is reloaded (SIGHUP) every 2 s; then SIGTERM, waits for umbra to drain and
# exit, and prints valgrind's summary. About 15-60 s on 2 CPUs.
#
# Exit status: 0 only when every response was what the request should get,
# umbra exited 0 after SIGTERM, and valgrind saw no error and no definite or
# indirect leak (--error-exitcode=9). Logs stay in the printed work dir when
# anything failed.
#
# usage: tests/leak/valgrind.sh [N]        env: UMBRA_BIN (default build/umbra)
#        CONCURRENCY (8), LEAK_TIMEOUT (seconds for the load, 300)
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
N=${1:-10000}
BIN=${UMBRA_BIN:-$ROOT/build/umbra}
CONC=${CONCURRENCY:-8}
LOAD_TIMEOUT=${LEAK_TIMEOUT:-300}
SUPP=$ROOT/tests/leak/umbra.supp
PY=${PYTHON:-/usr/bin/python3}

command -v valgrind >/dev/null || { echo "valgrind.sh: valgrind is not installed" >&2; exit 2; }
if [[ -z ${UMBRA_BIN:-} ]]; then
	make -s build/umbra >/dev/null # test what the sources say now
fi
[[ -x $BIN ]] || { echo "valgrind.sh: $BIN is not built" >&2; exit 2; }

WORK=$(mktemp -d /tmp/umbra-leak.XXXXXX)
FAKE_PID=
UMBRA_PID=
RELOADER_PID=
ok=0

cleanup() {
	# only the processes this script started, by pid
	[[ -n $RELOADER_PID ]] && kill -TERM "$RELOADER_PID" 2>/dev/null || true
	[[ -n $UMBRA_PID ]] && kill -KILL "$UMBRA_PID" 2>/dev/null || true
	[[ -n $FAKE_PID ]] && kill -TERM "$FAKE_PID" 2>/dev/null || true
	[[ -n $FAKE_PID ]] && wait "$FAKE_PID" 2>/dev/null || true
	if [[ $ok == 1 ]]; then
		rm -rf "$WORK"
	else
		echo "valgrind.sh: logs kept in $WORK" >&2
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM # so the EXIT trap still stops what we started

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- fake upstream ----
"$PY" "$ROOT/tests/integration/fakeupstream.py" --host 127.0.0.1 --port 0 \
	--set 'aws_keys={"AKIALEAKTEST00000001": "leak-secret"}' \
	>"$WORK/fake.out" 2>"$WORK/fake.err" &
FAKE_PID=$!
for _ in $(seq 100); do
	grep -q '^READY' "$WORK/fake.out" 2>/dev/null && break
	sleep 0.1
done
FAKE_PORT=$(awk '/^READY/ {print $2}' "$WORK/fake.out")
[[ -n $FAKE_PORT ]] || { echo "valgrind.sh: fake upstream did not start" >&2; cat "$WORK/fake.err" >&2; exit 1; }

# ---- umbra under valgrind ----
PORT=$(free_port)
cat >"$WORK/umbra.yaml" <<EOF
listen: "127.0.0.1:$PORT"
workers: 2
limits: { drain_timeout_ms: 10000, max_body_bytes: 1048576 }
log: { level: info, requests: true }
providers:
  - name: main
    type: openai
    endpoints:
      - { name: m1, url: "http://127.0.0.1:$FAKE_PORT", weight: 2 }
      - { name: m2, url: "http://127.0.0.1:$FAKE_PORT/" }
    health_check: { interval_s: 1, timeout_s: 1 }
  - name: flaky
    type: openai
    url: "http://127.0.0.1:$FAKE_PORT"
    max_attempts: 1
    ejection: { consecutive_failures: 5, base_ms: 50, max_ms: 200 }
  - { name: anth, type: anthropic, url: "http://127.0.0.1:$FAKE_PORT", api_key: leak }
  - { name: olla, type: ollama, url: "http://127.0.0.1:$FAKE_PORT" }
  - name: bed
    type: bedrock
    url: "http://127.0.0.1:$FAKE_PORT"
    region: us-east-1
    access_key_id: AKIALEAKTEST00000001
    secret_access_key: leak-secret
models:
  - { name: m, provider: main }
  - { name: renamed, provider: main, upstream_model: up-model }
  - { name: flaky, provider: flaky }
  - { name: claude, provider: anth, upstream_model: claude-leak }
  - { name: llama, provider: olla, upstream_model: "llama:8b" }
  - { name: nova, provider: bed, upstream_model: "amazon.nova-leak-v1:0" }
EOF

valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect \
	--errors-for-leak-kinds=definite,indirect --error-exitcode=9 \
	--suppressions="$SUPP" --num-callers=40 --fair-sched=yes \
	--log-file="$WORK/valgrind.log" \
	"$BIN" serve -c "$WORK/umbra.yaml" >"$WORK/umbra.out" 2>"$WORK/umbra.err" &
UMBRA_PID=$!

up=0
for _ in $(seq 600); do
	curl -sS -f -o /dev/null "http://127.0.0.1:$PORT/health" 2>>"$WORK/curl.err" && { up=1; break; }
	kill -0 "$UMBRA_PID" 2>/dev/null || break
	sleep 0.1
done
if [[ $up != 1 ]]; then
	echo "valgrind.sh: umbra did not come up" >&2
	tail -n 20 "$WORK/umbra.err" "$WORK/valgrind.log" >&2
	exit 1
fi

# ---- the load, with a config reload (SIGHUP) every 2 s meanwhile ----
# Each reload builds a new runtime (pools carry endpoint state over) while
# requests still hold the old one: the refcounting must free every one.
(
	w=1
	while kill -0 "$UMBRA_PID" 2>/dev/null; do
		sleep 2
		w=$((3 - w)) # alternate m2's weight 1 <-> 2 so the config changes
		sed -i "s/m2, url: \(\"[^\"]*\"\)\(, weight: [0-9]*\)\?/m2, url: \1, weight: $w/" "$WORK/umbra.yaml"
		kill -HUP "$UMBRA_PID" 2>/dev/null || true
	done
) &
RELOADER_PID=$!
load_rc=0
timeout -k 5 "$LOAD_TIMEOUT" "$PY" - "$PORT" "$N" "$CONC" <<'PYEOF' || load_rc=$?
"""Bounded asyncio load: N requests over CONC keep-alive connections.

Each request kind says which statuses are right; anything else, a malformed
response or a hang (30 s per request) counts as a failure."""
import asyncio
import json
import random
import sys
import time

PORT, N, CONC = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
TIMEOUT = 30


def messages(model, content="hi", stream=False):
    return json.dumps({"model": model, "max_tokens": 64, "stream": stream,
                       "messages": [{"role": "user", "content": content}]}).encode()


def chat(model, content="hi", stream=False, extra=None):
    b = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        b["stream"] = True
    if extra:
        b.update(extra)
    return json.dumps(b).encode()


BIG = "x" * 120000

# kind: (weight, method, path, body-maker, allowed statuses, check)
KINDS = {
    "chat": (30, "POST", "/v1/chat/completions", lambda: chat("m"), {200}, "json"),
    "chat_renamed": (5, "POST", "/v1/chat/completions", lambda: chat("renamed"), {200}, "json"),
    "stream": (20, "POST", "/v1/chat/completions", lambda: chat("m", stream=True), {200}, "sse"),
    "stream_usage": (5, "POST", "/v1/chat/completions",
                     lambda: chat("m", stream=True, extra={"stream_options": {"include_usage": True}}),
                     {200}, "sse_usage"),
    "embed": (4, "POST", "/v1/embeddings",
              lambda: json.dumps({"model": "m", "input": ["a", "b"]}).encode(), {200}, "json"),
    "models": (3, "GET", "/v1/models", None, {200}, "json"),
    "health": (2, "GET", "/health", None, {200}, "json"),
    "metrics": (1, "GET", "/metrics", None, {200}, None),
    "404_path": (4, "GET", "/v1/nope", None, {404}, "json"),
    "405": (2, "GET", "/v1/chat/completions", None, {405}, "json"),
    "400_json": (4, "POST", "/v1/chat/completions", lambda: b'{"model":"m","messages":[', {400}, "json"),
    "400_type": (2, "POST", "/v1/chat/completions",
                 lambda: b'{"model":"m","messages":[{"role":"user"}],"stream":"yes"}', {400}, "json"),
    "404_model": (3, "POST", "/v1/chat/completions", lambda: chat("no-such-model"), {404}, "json"),
    "up_500": (3, "POST", "/v1/chat/completions", lambda: chat("flaky", "fake:status=500"), {502, 503}, "json"),
    "up_429": (2, "POST", "/v1/chat/completions",
               lambda: chat("flaky", "fake:status=429,retry_after=1"), {429, 503}, "json"),
    "up_garbage": (2, "POST", "/v1/chat/completions", lambda: chat("flaky", "fake:garbage=true"),
                   {502, 503}, "json"),
    "up_stream_cut": (2, "POST", "/v1/chat/completions",
                      lambda: chat("flaky", "fake:disconnect_after=2,content=a b c d e f", stream=True),
                      {200, 502, 503}, "cut"),
    "big": (2, "POST", "/v1/chat/completions", lambda: chat("m", BIG), {200}, "json"),
    "chunked_req": (2, "POST", "/v1/chat/completions", lambda: chat("m", "chunked"), {200}, "json"),
    "client_abort": (2, "POST", "/v1/chat/completions",
                     lambda: chat("m", "fake:chunk_interval=0.01,content=" + " ".join(["w"] * 40),
                                  stream=True), {200}, "abort"),
    "conn_close": (2, "GET", "/v1/models", None, {200}, "json"),
    # translation: OpenAI clients on other wire formats, Anthropic clients
    "xl_chat": (3, "POST", "/v1/chat/completions", lambda: chat("claude", "fake:tools=2"), {200}, "json"),
    "xl_stream": (3, "POST", "/v1/chat/completions", lambda: chat("llama", stream=True), {200}, "sse"),
    "xl_bedrock": (2, "POST", "/v1/chat/completions", lambda: chat("nova", stream=True), {200}, "sse"),
    "xl_cut": (1, "POST", "/v1/chat/completions",
               lambda: chat("claude", "fake:disconnect_after=2,content=a b c d e f", stream=True),
               {200, 502}, "cut"),
    "msg": (3, "POST", "/v1/messages", lambda: messages("m"), {200}, "json"),
    "msg_stream": (3, "POST", "/v1/messages", lambda: messages("nova", stream=True), {200}, "anthropic_sse"),
    "msg_pass": (2, "POST", "/v1/messages", lambda: messages("claude", stream=True), {200}, "anthropic_sse"),
    "msg_400": (1, "POST", "/v1/messages", lambda: b'{"model":"m","messages":[]}', {400}, "json"),
}

fails = []
counts = {k: 0 for k in KINDS}
statuses = {}


async def read_response(reader, method):
    line = await reader.readline()
    if not line:
        raise ConnectionError("closed before a status line")
    parts = line.decode("latin-1").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    body = b""
    cut = False
    if method == "HEAD" or status in (204, 304):
        pass
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            sz = await reader.readline()
            if not sz:
                cut = True
                break
            n = int(sz.split(b";")[0], 16)
            if n == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                break
            chunks.append(await reader.readexactly(n))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return status, headers, body, cut


def check(kind, check_kind, status, headers, body, cut):
    allowed = KINDS[kind][4]
    if status not in allowed:
        return "status %d not in %s: %r" % (status, sorted(allowed), body[:200])
    if cut and check_kind != "cut":
        return "response cut short"
    if check_kind == "json":
        try:
            json.loads(body)
        except Exception as e:
            return "body is not JSON (%s): %r" % (e, body[:200])
    elif check_kind in ("sse", "sse_usage"):
        text = body.decode()
        if not text.rstrip().endswith("data: [DONE]"):
            return "stream does not end with [DONE]: %r" % text[-200:]
        has_usage = '"usage":{' in text.replace(" ", "")
        if (check_kind == "sse_usage") != has_usage:
            return "usage chunk %s" % ("missing" if check_kind == "sse_usage" else "leaked")
    elif check_kind == "anthropic_sse":
        text = body.decode()
        if not text.startswith("event: message_start") or "event: message_stop" not in text:
            return "not a whole Anthropic stream: %r" % text[-200:]
    return None


class Conn:
    def __init__(self):
        self.r = self.w = None
        self.prev = None  # what the connection carried before (for reports)
        self.served = 0

    async def open(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", PORT)

    def close(self):
        if self.w:
            self.w.close()
        self.r = self.w = None
        self.prev = None
        self.served = 0


def request_bytes(kind, method, path, body, close=False):
    hdr = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nx-request-id: leak-%s\r\n" % (method, path, kind)
    if close:
        hdr += "Connection: close\r\n"
    if body is None:
        return (hdr + "\r\n").encode()
    hdr += "Content-Type: application/json\r\n"
    if kind == "chunked_req":
        out = (hdr + "Transfer-Encoding: chunked\r\n\r\n").encode()
        for i in range(0, len(body), 7):
            piece = body[i:i + 7]
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
        return out + b"0\r\n\r\n"
    return (hdr + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body


async def one(conn, kind):
    _, method, path, maker, _, check_kind = KINDS[kind]
    body = maker() if maker else None
    if check_kind == "abort":
        # a separate connection that hangs up after the first bytes
        c = Conn()
        await c.open()
        c.w.write(request_bytes(kind, method, path, body))
        await c.w.drain()
        await c.r.readuntil(b"\r\n\r\n")
        await c.r.read(64)
        c.w.transport.abort()
        return
    close = kind == "conn_close"
    if conn.w is None:
        await conn.open()
    conn.w.write(request_bytes(kind, method, path, body, close))
    await conn.w.drain()
    status, headers, rbody, cut = await read_response(conn.r, method)
    statuses[status] = statuses.get(status, 0) + 1
    conn.prev = "%s (%d)" % (kind, status)
    conn.served += 1
    err = check(kind, check_kind, status, headers, rbody, cut)
    if err:
        fails.append("%s: %s" % (kind, err))
    # after a broken stream umbra ends the chunked body cleanly (an SSE
    # error event, then the last chunk) and closes the connection: there
    # is no header left to say so, so do not reuse it
    broken = check_kind == "cut" and not rbody.rstrip().endswith(b"data: [DONE]")
    if cut or close or broken or headers.get("connection", "").lower() == "close":
        conn.close()


async def worker(queue):
    conn = Conn()
    while True:
        try:
            kind = queue.get_nowait()
        except asyncio.QueueEmpty:
            break
        try:
            await asyncio.wait_for(one(conn, kind), TIMEOUT)
        except Exception as e:
            fails.append("%s: %s: %s [after %s, request %d on the connection]"
                         % (kind, type(e).__name__, e, conn.prev, conn.served + 1))
            conn.close()
    conn.close()


async def main():
    rnd = random.Random(1234)
    names = list(KINDS)
    weights = [KINDS[k][0] for k in names]
    queue = asyncio.Queue()
    for _ in range(N):
        k = rnd.choices(names, weights)[0]
        counts[k] += 1
        queue.put_nowait(k)
    t0 = time.time()
    await asyncio.gather(*(worker(queue) for _ in range(CONC)))
    dt = time.time() - t0
    print("load: %d requests in %.1fs (%.0f/s) over %d connections" % (N, dt, N / dt, CONC))
    print("load: kinds %s" % json.dumps(counts, sort_keys=True))
    print("load: statuses %s" % json.dumps(statuses, sort_keys=True))
    if fails:
        print("load: %d FAILED, first ones:" % len(fails))
        for f in fails[:15]:
            print("  " + f)
        sys.exit(1)


asyncio.run(main())
PYEOF

kill -TERM "$RELOADER_PID" 2>/dev/null || true
wait "$RELOADER_PID" 2>/dev/null || true
RELOADER_PID=
reloads=$(grep -c '"config reloaded' "$WORK/umbra.err" || true)
echo "reloads during the load: $reloads"

# ---- drain and exit ----
kill -TERM "$UMBRA_PID"
umbra_rc=0
for _ in $(seq 1200); do
	kill -0 "$UMBRA_PID" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$UMBRA_PID" 2>/dev/null; then
	echo "valgrind.sh: umbra did not exit within 120 s of SIGTERM" >&2
	umbra_rc=124
else
	wait "$UMBRA_PID" || umbra_rc=$?
fi
UMBRA_PID=

echo "---- valgrind summary ($(basename "$BIN") serve, $N requests) ----"
grep -E "HEAP SUMMARY|in use at exit|total heap usage|LEAK SUMMARY|definitely lost|indirectly lost|possibly lost|still reachable|suppressed:|ERROR SUMMARY" \
	"$WORK/valgrind.log" | sed 's/^==[0-9]*== *//'
if grep -q "are definitely lost\|are indirectly lost\|Invalid \|uninitialised\|Mismatched free" "$WORK/valgrind.log"; then
	echo "---- first valgrind reports ----"
	grep -n -A25 -m3 "are definitely lost\|are indirectly lost\|Invalid \|uninitialised\|Mismatched free" \
		"$WORK/valgrind.log" | head -120
fi
echo "load rc=$load_rc umbra rc=$umbra_rc (9 = valgrind errors or leaks)"

if [[ $load_rc == 0 && $umbra_rc == 0 ]]; then
	ok=1
	echo "PASS: no leak, no memory error, every response as expected"
	exit 0
fi
echo "FAIL" >&2
exit 1
