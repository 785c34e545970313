"""Error statuses and bodies in OpenAI's shape (DESIGN.md "Error bodies",
"Upstream failures"), including mid-stream failures."""

import json
import time

import pytest

import httpc
from conftest import Behavior, assert_openai_error, base_config, chat_body, free_port, provider


@pytest.mark.parametrize("body", [
    b'{"model": "m", "messages": [',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}}',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}],}',
    b"{'model': 'm'}",
    b"",
    b"null",
    b"[]",
    b'"just a string"',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]} trailing',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "model": "other"}',
    b'{"model": "m", "stream": false, "messages": [{"role": "user", "content": "hi"}], "stream": true}',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 01}',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "t": NaN}',
    b'{"model": "m", "messages": [{"role": "user", "content": "hi\tx"}]}',
], ids=["truncated", "extra-brace", "trailing-comma", "single-quotes", "empty", "null", "array", "string",
        "trailing-garbage", "duplicate-model", "duplicate-stream", "leading-zero", "nan", "raw-tab-in-string"])
def test_400_malformed_json(gateway, fake, body):
    r = gateway.post("/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400, "invalid_request_error")
    assert fake.posts() == []
    assert gateway.chat("m").status == 200


@pytest.mark.parametrize("body", [
    {"model": 5, "messages": [{"role": "user", "content": "hi"}]},
    {"model": None, "messages": [{"role": "user", "content": "hi"}]},
    {"model": ["m"], "messages": [{"role": "user", "content": "hi"}]},
    {"model": "m", "messages": "x"},
    {"model": "m", "messages": {"role": "user"}},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": 1},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": "x"},
    {"messages": [{"role": "user", "content": "hi"}]},
    {"model": "m"},
    {"model": "m", "messages": ["not an object"]},
], ids=["model-int", "model-null", "model-list", "messages-str", "messages-obj", "stream-str", "stream-int",
        "stream_options-str", "no-model", "no-messages", "message-str"])
def test_400_wrong_types(gateway, fake, body):
    r = gateway.post("/v1/chat/completions", json_body=body)
    err = assert_openai_error(r, 400, "invalid_request_error")
    assert r.header("x-request-id")
    assert fake.posts() == [], err


@pytest.mark.parametrize("body", [
    {"model": 5, "input": "x"},
    {"model": "m"},
    {"model": "m", "input": {"a": 1}},
], ids=["model-int", "no-input", "input-object"])
def test_400_embeddings_wrong_types(gateway, fake, body):
    r = gateway.post("/v1/embeddings", json_body=body)
    assert_openai_error(r, 400, "invalid_request_error")
    assert fake.posts() == []


def test_404_unknown_model(gateway, fake):
    r = gateway.chat("no-such-model")
    err = assert_openai_error(r, 404, "not_found_error")
    assert "no-such-model" in err["message"]
    r, _, _ = gateway.stream(chat_body("no-such-model", stream=True))
    assert_openai_error(r, 404, "not_found_error")
    r = gateway.post("/v1/embeddings", json_body={"model": "no-such-model", "input": "x"})
    assert_openai_error(r, 404, "not_found_error")
    assert fake.posts() == []


def test_404_unknown_path_and_405(gateway):
    r = gateway.get("/v1/nothing-here")
    assert_openai_error(r, 404, "not_found_error")
    r = gateway.get("/v1/chat/completions")
    assert r.status in (404, 405), r
    json.loads(r.body)


def test_413_body_too_large(make_gateway, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p"}],
                                  limits={"max_body_bytes": 2048}))
    small = chat_body("m", content="a" * 1500)
    assert gw.post("/v1/chat/completions", json_body=small).status == 200
    big = chat_body("m", content="a" * 4000)
    r = gw.post("/v1/chat/completions", json_body=big)
    assert_openai_error(r, 413, "invalid_request_error", "request_too_large")
    # declared length far over the limit: refused without reading it all
    with gw.conn() as c:
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 1000000000\r\n\r\n{\"model\":")
        r = c.read_body(c.read_head(), "POST")
        assert_openai_error(r, 413, "invalid_request_error", "request_too_large")
    # chunked body that grows over the limit
    with gw.conn() as c:
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            c.send(b"400\r\n" + b"a" * 1024 + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.read_body(c.read_head(), "POST")
        assert_openai_error(r, 413, "invalid_request_error", "request_too_large")
    assert len(fake.posts()) == 1
    assert gw.chat("m").status == 200


def test_chunked_request_body_accepted(gateway, fake):
    body = json.dumps(chat_body("m")).encode()
    with gateway.conn() as c:
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
        c.send(b"%x\r\n%s\r\n" % (10, body[:10]))
        c.send(b"%x;ext=1\r\n%s\r\n" % (len(body) - 10, body[10:]))
        c.send(b"0\r\n\r\n")
        r = c.read_body(c.read_head(), "POST")
    assert r.status == 200, r
    assert fake.chats()[0].body == body


def _single(make_gateway, fake, **pkw):
    port = free_port()
    return make_gateway(base_config(port, [provider("p", fake, **pkw)], [{"name": "m", "provider": "p"}]))


def test_502_upstream_500(make_gateway, fake):
    gw = _single(make_gateway, fake)
    fake.default = Behavior(status=500)
    r = gw.chat("m")
    assert_openai_error(r, 502, "api_error", "upstream_error")
    r, _, _ = gw.stream(chat_body("m", stream=True))
    assert_openai_error(r, 502, "api_error", "upstream_error")


@pytest.mark.parametrize("behavior", [
    dict(garbage=True),
    dict(garbage=True, chunked=True),
    dict(close_without_answer=True),
    dict(body=b'{"id": "x", "choices": [', content_type="application/json"),
    dict(body=b"HTTP/1.1 200 OK", content_type="text/html"),
], ids=["garbage", "garbage-chunked", "reset", "truncated-json", "html"])
def test_502_upstream_garbage_or_reset(make_gateway, fake, behavior):
    gw = _single(make_gateway, fake)
    fake.default = Behavior(**behavior)
    t0 = time.monotonic()
    r = gw.chat("m")
    assert_openai_error(r, 502, "api_error", "upstream_error")
    assert time.monotonic() - t0 < 5
    fake.default = Behavior()
    time.sleep(0.1)


def test_502_upstream_garbage_stream(make_gateway, fake):
    gw = _single(make_gateway, fake)
    fake.default = Behavior(garbage=True, content_type="text/event-stream")
    r, events, _ = gw.stream(chat_body("m", stream=True))
    # before anything valid reached the client: a plain 502, not a broken stream
    assert_openai_error(r, 502, "api_error", "upstream_error")


def test_502_connect_refused_single_endpoint(make_gateway):
    port = free_port()
    dead = "http://127.0.0.1:%d" % free_port()
    gw = make_gateway(base_config(port, [provider("p", dead)], [{"name": "m", "provider": "p"}]))
    r = gw.chat("m")
    assert r.status in (502, 503), r
    assert_openai_error(r, r.status, "api_error")


def test_503_no_healthy_endpoint(make_gateway, fake):
    fake.health_status = 503
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake, health_check={
        "interval_s": 1, "timeout_s": 1, "unhealthy_after": 1, "healthy_after": 1})],
        [{"name": "m", "provider": "p"}]))
    assert fake.wait_for(lambda: len(fake.health_requests) >= 2, 5)
    time.sleep(0.2)
    r = gw.chat("m")
    assert_openai_error(r, 503, "api_error", "no_healthy_endpoint")
    assert fake.chats() == []


def test_504_first_byte_timeout(make_gateway, fake):
    gw = _single(make_gateway, fake, timeouts={"first_byte_ms": 400}, max_attempts=1)
    fake.default = Behavior(first_byte_delay=5)
    t0 = time.monotonic()
    r = gw.chat("m")
    took = time.monotonic() - t0
    assert_openai_error(r, 504, "api_error", "upstream_timeout")
    assert 0.35 < took < 2.0, took
    r, _, _ = gw.stream(chat_body("m", stream=True))
    assert_openai_error(r, 504, "api_error", "upstream_timeout")
    # the upstream request was abandoned
    assert fake.wait_for(lambda: all(q.closed_at for q in fake.chats()), 3)


def test_504_idle_timeout_nonstream(make_gateway, fake):
    """Headers and half the body arrive, then the upstream stalls past idle_ms: 504, not a hang."""
    gw = _single(make_gateway, fake, timeouts={"idle_ms": 400, "first_byte_ms": 5000}, max_attempts=1)
    fake.default = Behavior(stall_body=True)
    t0 = time.monotonic()
    r = gw.chat("m")
    took = time.monotonic() - t0
    assert_openai_error(r, 504, "api_error", "upstream_timeout")
    assert took < 3, took


def test_429_passed_through_with_retry_after(make_gateway, fake):
    gw = _single(make_gateway, fake)
    fake.default = Behavior(status=429, retry_after=7)
    r = gw.chat("m")
    assert_openai_error(r, 429, "rate_limit_error")
    assert r.header("retry-after") == "7"
    r, _, _ = gw.stream(chat_body("m", stream=True))
    assert r.status == 429 and r.header("retry-after") == "7"


def test_upstream_4xx_passed_through(make_gateway, fake):
    """An upstream 400 (e.g. context too long) is the client's problem: not retried, status kept."""
    gw = _single(make_gateway, fake)
    fake.script(Behavior(status=400))
    r = gw.chat("m")
    assert r.status == 400, r
    json.loads(r.body)["error"]
    assert len(fake.chats()) == 1


def test_midstream_upstream_disconnect(make_gateway, fake):
    gw = _single(make_gateway, fake)
    fake.script(Behavior(chunks=["one", " two", " three", " four"], disconnect_after=2))
    r, events, _ = gw.stream(chat_body("m", stream=True))
    assert r.status == 200
    data = httpc.sse_data(events)
    assert "[DONE]" not in data
    errs = [d for d in data if "error" in d]
    assert len(errs) == 1, data
    assert data[-1] is errs[0]
    e = errs[0]["error"]
    assert {"message", "type", "code"} <= set(e) and e["type"] == "api_error"
    # the chunks that were received upstream before the failure were forwarded
    contents = [d["choices"][0]["delta"].get("content") for d in data[:-1]]
    assert contents == ["", "one", " two"]
    # each event complete
    for _, ev in events:
        assert ev.startswith(b"data: ") and ev.endswith(b"\n\n")
    assert gw.chat("m").status == 200


def test_midstream_idle_timeout(make_gateway, fake):
    gw = _single(make_gateway, fake, timeouts={"idle_ms": 500})
    fake.script(Behavior(chunks=["a", "b", "c"], pause_after=1, pause=5))
    t0 = time.monotonic()
    r, events, _ = gw.stream(chat_body("m", stream=True))
    assert r.status == 200
    assert time.monotonic() - t0 < 3
    data = httpc.sse_data(events)
    assert "[DONE]" not in data
    assert "error" in data[-1] and sum(1 for d in data if "error" in d) == 1, data
    assert fake.wait_for(lambda: fake.chats()[0].closed_at is not None, 2)


def _errors_by_kind(gw):
    out = {}
    for ln in gw.metrics().splitlines():
        if ln.startswith("umbra_upstream_errors_total{"):
            kind = ln.split('kind="', 1)[1].split('"', 1)[0]
            out[kind] = out.get(kind, 0) + float(ln.split()[-1])
    return out


def test_upstream_error_kinds_in_metrics(make_gateway, fake):
    dead = "http://127.0.0.1:%d" % free_port()
    port = free_port()
    gw = make_gateway(base_config(port, [
        provider("p", fake, max_attempts=1, timeouts={"first_byte_ms": 300},
                 ejection={"consecutive_failures": 1000}),
        provider("d", dead, max_attempts=1),
    ], [{"name": "m", "provider": "p"}, {"name": "dead", "provider": "d"}]))
    # behaviours chosen by the message itself, so a transparent re-send gets the same one
    magic = ["fake:status=500", "fake:status=429", "fake:garbage=true", "fake:close_without_answer=true",
             "fake:first_byte_delay=2"]
    got = [gw.chat("m", messages=[{"role": "user", "content": m}]).status for m in magic]
    assert got == [502, 429, 502, 502, 504], got
    assert gw.chat("dead").status in (502, 503)
    kinds = _errors_by_kind(gw)
    for k in ("status_5xx", "status_429", "garbage", "reset", "timeout", "connect"):
        assert kinds.get(k, 0) >= 1, (k, kinds)


def test_midstream_error_codes(make_gateway, fake):
    gw = _single(make_gateway, fake, timeouts={"idle_ms": 400})
    fake.script(Behavior(chunks=["a", "b", "c"], disconnect_after=1))
    _, events, _ = gw.stream(chat_body("m", stream=True))
    err = httpc.sse_data(events)[-1]["error"]
    assert err["type"] == "api_error" and err["code"] == "upstream_error", err
    fake.script(Behavior(chunks=["a", "b", "c"], pause_after=1, pause=3))
    _, events, _ = gw.stream(chat_body("m", stream=True))
    err = httpc.sse_data(events)[-1]["error"]
    assert err["type"] == "api_error" and err["code"] == "upstream_timeout", err
