"""Concurrency: 1000 concurrent streams and a burst of non-streaming requests,
each answer checked to be the right one for its request (no cross-wiring)."""

import asyncio
import json
import time

from conftest import Behavior, base_config, free_port, provider

N_STREAMS = 1000


async def _read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = bytearray()
    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += (await reader.readexactly(size + 2))[:-2]
    elif "content-length" in headers:
        body += await reader.readexactly(int(headers["content-length"]))
    else:
        body += await reader.read()
    return status, headers, bytes(body)


async def _one(port, i, stream, results, start_gate):
    await start_gate.wait()
    include = stream and i % 2 == 0
    body = {"model": "m", "messages": [{"role": "user", "content": "req-%d" % i}]}
    if stream:
        body["stream"] = True
        if include:
            body["stream_options"] = {"include_usage": True}
    data = json.dumps(body).encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data))
        await writer.drain()
        status, headers, raw = await asyncio.wait_for(_read_response(reader), 60)
        writer.close()
    except Exception as e:  # noqa: BLE001
        results[i] = "transport error: %r" % e
        return
    want = "answer for req-%d ok" % i
    if status != 200:
        results[i] = "status %d %r" % (status, raw[:200])
        return
    if not stream:
        j = json.loads(raw)
        got = j["choices"][0]["message"]["content"]
        results[i] = True if got == want else "wrong content %r" % got
        return
    if not raw.endswith(b"data: [DONE]\n\n"):
        results[i] = "no [DONE]: %r" % raw[-200:]
        return
    events = [e for e in raw.split(b"\n\n") if e]
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    text = "".join(p["choices"][0]["delta"].get("content", "") for p in payloads if p["choices"])
    usage = [p for p in payloads if p["choices"] == []]
    if text != want:
        results[i] = "wrong text %r" % text
    elif include and (len(usage) != 1 or usage[0]["usage"]["completion_tokens"] != 4):
        results[i] = "usage missing %r" % usage
    elif not include and usage:
        results[i] = "usage chunk not asked for"
    else:
        results[i] = True


def _run_many(port, n, stream):
    async def main():
        gate = asyncio.Event()
        results = [None] * n
        tasks = [asyncio.ensure_future(_one(port, i, stream, results, gate)) for i in range(n)]
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
        return results
    return asyncio.run(main())


def _per_request(req):
    content = json.loads(req.body)["messages"][0]["content"]
    return Behavior(content="answer for %s ok" % content, completion_tokens=4, chunk_interval=0.25)


def test_1000_concurrent_streams(make_gateway, fake):
    fake.handler = _per_request
    port = free_port()
    # keepalive: 32 idle upstream connections per worker, so after the burst
    # at most 2 x 32 stay open on the model server
    gw = make_gateway(base_config(port, [provider("p", fake, keepalive=32)],
                                  [{"name": "m", "provider": "p"}], workers=2))
    t0 = time.monotonic()
    results = _run_many(port, N_STREAMS, True)
    took = time.monotonic() - t0
    bad = [(i, r) for i, r in enumerate(results) if r is not True]
    assert not bad, "%d of %d streams failed, e.g. %r" % (len(bad), N_STREAMS, bad[:5])
    assert len(fake.chats()) == N_STREAMS
    # ~8 events 0.25 s apart per stream: they must have run side by side, not one after another
    assert took < 45, took
    assert fake.wait_for(lambda: fake.open_connections <= 64, 5), fake.open_connections
    assert gw.get("/health").status == 200
    # the in-flight gauge is back to zero
    m = [l for l in gw.metrics().splitlines() if l.startswith("umbra_requests_in_flight")]
    assert m and float(m[0].split()[-1]) == 0, m


def test_500_concurrent_nonstream(make_gateway, fake):
    def per(req):
        b = _per_request(req)
        b.chunk_interval = 0
        b.first_byte_delay = 0.2
        return b
    fake.handler = per
    port = free_port()
    make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p"}], workers=2))
    results = _run_many(port, 500, False)
    bad = [(i, r) for i, r in enumerate(results) if r is not True]
    assert not bad, "%d failed, e.g. %r" % (len(bad), bad[:5])
