"""Wire-level details real clients and servers depend on: SSE framing variants
from upstreams, Expect: 100-continue, query strings, HEAD, large bodies,
upstream connection reuse and stale pooled connections, hostile values that
reach the logs and metrics, reloads under load."""

import json
import re
import signal
import threading
import time

import pytest

import httpc
from conftest import Behavior, base_config, chat_body, free_port, provider


def _chunk(cid, delta, finish=None, usage=False):
    d = {"id": cid, "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        d["usage"] = None
    return json.dumps(d, separators=(",", ":")).encode()


def _usage_chunk(cid):
    return json.dumps({"id": cid, "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}},
                      separators=(",", ":")).encode()


def _stream_text(data):
    return "".join(d["choices"][0]["delta"].get("content", "") for d in data
                   if d != "[DONE]" and d.get("choices"))


def _sse_variant(kind):
    evs = [_chunk("c1", {"role": "assistant", "content": ""}, usage=True),
           _chunk("c1", {"content": "Hi"}, usage=True), _chunk("c1", {"content": " there"}, usage=True),
           _chunk("c1", {}, "stop", usage=True), _usage_chunk("c1")]
    if kind == "split-bytes":
        whole = b"".join(b"data: " + e + b"\n\n" for e in evs) + b"data: [DONE]\n\n"
        return [whole[i:i + 7] for i in range(0, len(whole), 7)]
    if kind == "one-write":
        return [b"".join(b"data: " + e + b"\n\n" for e in evs) + b"data: [DONE]\n\n"]
    if kind == "crlf":
        return [b"data: " + e + b"\r\n\r\n" for e in evs] + [b"data: [DONE]\r\n\r\n"]
    if kind == "comments-and-no-space":
        return [b": keep-alive\n\n"] + [b"data:" + e + b"\n\n" for e in evs] + [b": bye\n\n", b"data:[DONE]\n\n"]
    if kind == "split-usage-chunk":
        u = b"data: " + evs[-1] + b"\n\n"
        return [b"data: " + e + b"\n\n" for e in evs[:-1]] + [u[:10], u[10:40], u[40:]] + [b"data: [DONE]\n\n"]
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["split-bytes", "one-write", "crlf", "comments-and-no-space", "split-usage-chunk"])
def test_upstream_sse_framing_variants(gateway, fake, kind):
    """However the upstream frames its SSE, the client gets complete events, the
    right text, no usage chunk (not asked) and [DONE]; usage is still logged."""
    fake.script(Behavior(sse_raw=_sse_variant(kind), sse_interval=0.003))
    r, events, _ = gateway.stream(chat_body("m", stream=True), headers={"x-request-id": "sse-" + kind})
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert data and data[-1] == "[DONE]", events
    assert _stream_text(data) == "Hi there"
    assert not any(d != "[DONE]" and d.get("choices") == [] for d in data), "usage chunk not asked for"
    for _, ev in events:
        assert ev.endswith(b"\n\n") or ev.endswith(b"\r\n\r\n") or ev.endswith(b"\r\r"), ev
    time.sleep(0.2)
    log = [l for l in gateway.request_logs() if l.get("id") == "sse-" + kind]
    assert len(log) == 1 and log[0]["prompt_tokens"] == 3 and log[0]["completion_tokens"] == 2, log
    # and with include_usage the usage chunk arrives intact
    fake.script(Behavior(sse_raw=_sse_variant(kind), sse_interval=0.003))
    r, events, _ = gateway.stream(chat_body("m", stream=True, stream_options={"include_usage": True}))
    data = httpc.sse_data(events)
    usage = [d for d in data if d != "[DONE]" and d.get("choices") == []]
    assert len(usage) == 1 and usage[0]["usage"]["total_tokens"] == 5, data


def test_stream_upstream_sends_no_usage(gateway, fake):
    fake.script(Behavior(usage_in_stream=False))
    r, events, _ = gateway.stream(chat_body("m", stream=True, stream_options={"include_usage": True}))
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    assert _stream_text(data) == "Hello from the fake upstream."


def test_expect_100_continue(gateway, fake):
    body = json.dumps(chat_body("m", content="x" * 5000)).encode()
    with gateway.conn() as c:
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        c.sock.settimeout(1.5)
        try:
            r = c.read_head()
            assert r.status == 100, r
        except OSError:
            pass  # no 100 within 1.5 s: curl then sends the body anyway
        c.sock.settimeout(10)
        c.send(body)
        r = c.read_body(c.read_head(), "POST")
        assert r.status == 200, r
    assert fake.chats()[0].body == body
    assert fake.chats()[0].header("expect") is None


def test_query_string_on_api_path(gateway, fake):
    r = gateway.post("/v1/chat/completions?api-version=2024-06-01", json_body=chat_body("m"))
    assert r.status == 200, r
    assert gateway.get("/v1/models?limit=5").status == 200
    assert gateway.get("/health?x=1").status == 200


def test_head_health(gateway):
    with gateway.conn() as c:
        r = c.request("HEAD", "/health")
        assert r.status in (200, 405), r
        assert r.body == b""
        assert c.request("GET", "/health").status == 200  # connection still in sync


def test_large_request_and_response_bodies(gateway, fake):
    big = "y" * (3 << 20)
    body = json.dumps(chat_body("m", content=big)).encode()
    fake.script(Behavior(content="z" * (5 << 20)))
    r = gateway.post("/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 200, r
    assert fake.chats()[0].body == body
    assert r.body == fake.chats()[0].sent_body
    fake.script(Behavior(content="z" * (2 << 20), chunked=True))
    r = gateway.chat("m")
    assert r.status == 200 and r.json()["choices"][0]["message"]["content"] == "z" * (2 << 20)


def test_max_response_bytes(make_gateway, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake, max_attempts=1)], [{"name": "m", "provider": "p"}],
                                  limits={"max_response_bytes": 100000}))
    fake.script(Behavior(content="z" * 200000))
    r = gw.chat("m")
    assert r.status == 502, r
    json.loads(r.body)["error"]
    assert gw.chat("m").status == 200


def test_upstream_connections_reused(gateway, fake):
    for _ in range(20):
        assert gateway.chat("m").status == 200
    assert fake.connections <= 2, "%d upstream connections for 20 sequential requests" % fake.connections


def test_stale_pooled_upstream_connection(gateway, fake):
    """The upstream closes idle keep-alive connections (as servers do after their
    idle timeout): the next request must not fail on the dead pooled connection."""
    fake.idle_timeout = 0.2
    for i in range(6):
        r = gateway.chat("m")
        assert r.status == 200, (i, r)
        r, events, _ = gateway.stream(chat_body("m", stream=True))
        assert r.status == 200 and httpc.sse_data(events)[-1] == "[DONE]", (i, r)
        time.sleep(0.35)


def test_upstream_connection_close_header(gateway, fake):
    fake.default = Behavior(close_after=True)
    for _ in range(5):
        assert gateway.chat("m").status == 200
    assert fake.connections == 5


def test_hostile_values_in_logs_and_metrics(gateway, fake):
    rid = 'he said "hi" \\ back'
    r = gateway.chat("m", headers={"x-request-id": rid})
    assert r.status == 200
    evil = 'evil-model-"quoted"\\-\u00e9-' + "z" * 300
    r = gateway.chat(evil)
    assert r.status == 404
    r = gateway.post("/v1/chat/completions/%22%0a", json_body=chat_body("m"))
    assert r.status in (400, 404)
    time.sleep(0.2)
    for ln in gateway.log_text().splitlines():
        if ln.strip():
            json.loads(ln)  # every log line stays valid JSON
    ids = [l["id"] for l in gateway.request_logs()]
    assert rid in ids or any(i and i != rid for i in ids)
    m = gateway.metrics()
    assert "evil-model" not in m, "client-chosen model names must not become metric labels"
    assert "\n" not in r.header("x-request-id", "")


def test_request_id_hostile_values(gateway, fake):
    long_id = "a" * 5000
    r = gateway.chat("m", headers={"x-request-id": long_id})
    assert r.status in (200, 400, 431), r
    if r.status == 200:
        up = fake.chats()[-1].header("x-request-id")
        assert up == r.header("x-request-id")
        assert len(up) <= 5000


def test_reload_under_load(make_gateway, fake):
    port = free_port()
    cfg = base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p", "upstream_model": "u0"}])
    gw = make_gateway(cfg)
    fake.default = Behavior(first_byte_delay=0.05)
    stop = threading.Event()
    results = []

    def worker():
        with gw.conn(timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.request("POST", "/v1/chat/completions", json_body=chat_body("m"))
                    results.append(r.status)
                    if (r.header("connection") or "").lower() == "close":
                        return
                except Exception as e:  # noqa: BLE001
                    results.append(repr(e))
                    return

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for i in range(1, 6):
        time.sleep(0.3)
        gw.reload(base_config(port, [provider("p", fake)],
                              [{"name": "m", "provider": "p", "upstream_model": "u%d" % i}]))
    time.sleep(0.5)
    stop.set()
    for t in ts:
        t.join(15)
    assert results and all(s == 200 for s in results), [s for s in results if s != 200][:5]
    assert len(results) > 50
    models = {x.json()["model"] for x in fake.chats()}
    assert "u5" in models and len(models) >= 3, models
    assert gw.chat("m").status == 200 and fake.chats()[-1].json()["model"] == "u5"
