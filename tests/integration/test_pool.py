"""Endpoint pools: unix/https endpoints, weighted round robin, health checks,
passive failover, bounded retries, fallbacks, ejection, client cancellation."""

import os
import socket
import time

import httpc
from conftest import Behavior, assert_openai_error, base_config, chat_body, free_port, provider


def ep(name, f, weight=None, **kw):
    d = {"name": name, "url": f.url if hasattr(f, "url") else f}
    if weight is not None:
        d["weight"] = weight
    d.update(kw)
    return d


def test_unix_socket_endpoint(make_gateway, make_fake, tmp_path):
    path = str(tmp_path / "up.sock")
    f = make_fake(unix_path=path, name="unix")
    port = free_port()
    gw = make_gateway(base_config(port, [provider("u", f)], [{"name": "m", "provider": "u", "upstream_model": "um"}]))
    assert f.url == "unix://" + path
    r = gw.chat("m")
    assert r.status == 200, r
    assert f.chats()[0].json()["model"] == "um"
    r, events, _ = gw.stream(chat_body("m", stream=True))
    assert httpc.sse_data(events)[-1] == "[DONE]"
    assert gw.post("/v1/embeddings", json_body={"model": "m", "input": "x"}).status == 200


def test_https_endpoint_with_ca_file(make_gateway, make_fake, certs):
    f = make_fake(tls=(certs["up_cert"], certs["up_key"]), name="tls")
    assert f.url.startswith("https://127.0.0.1:")
    port = free_port()
    gw = make_gateway(base_config(port, [provider("t", f, ca_file=certs["ca"], api_key="sk-tls")],
                                  [{"name": "m", "provider": "t"}]))
    r = gw.chat("m")
    assert r.status == 200, r
    assert f.chats()[0].header("authorization") == "Bearer sk-tls"
    r, events, _ = gw.stream(chat_body("m", stream=True))
    assert httpc.sse_data(events)[-1] == "[DONE]"


def test_https_endpoint_untrusted_cert_refused(make_gateway, make_fake, certs):
    f = make_fake(tls=(certs["up_cert"], certs["up_key"]), name="tls")
    port = free_port()
    gw = make_gateway(base_config(port, [provider("t", f, api_key="sk-secret-tls", max_attempts=1)],
                                  [{"name": "m", "provider": "t"}]))
    r = gw.chat("m")
    assert r.status == 502, r
    assert_openai_error(r, 502, "api_error")
    assert f.chats() == []  # the key never went to an unverified peer


def test_weighted_round_robin(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("a", a, 3), ep("b", b, 1))],
                                  [{"name": "m", "provider": "p"}]))
    for _ in range(40):
        assert gw.chat("m").status == 200
    assert (len(a.chats()), len(b.chats())) == (30, 10)
    # smooth: never more than 3 in a row on the heavy endpoint, b used every 4 requests
    seq = sorted([(r.received_at, "a") for r in a.chats()] + [(r.received_at, "b") for r in b.chats()])
    order = "".join(x for _, x in seq)
    assert "aaaa" not in order and "bb" not in order, order
    time.sleep(0.2)
    eps = [l["endpoint"] for l in gw.request_logs() if l.get("path") == "/v1/chat/completions"]
    assert (eps.count("a"), eps.count("b")) == (30, 10), eps


def test_weight_default_is_equal(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", a, b)], [{"name": "m", "provider": "p"}]))
    for _ in range(10):
        assert gw.chat("m").status == 200
    assert (len(a.chats()), len(b.chats())) == (5, 5)


def _wait_status_requests(f, n, timeout):
    start = len(f.health_requests)
    return f.wait_for(lambda: len(f.health_requests) >= start + n, timeout)


def test_active_health_check_down_and_up(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("a", a), ep("b", b), api_key="sk-h", health_check={
        "interval_s": 1, "timeout_s": 1, "unhealthy_after": 2, "healthy_after": 1})],
        [{"name": "m", "provider": "p"}]))
    assert _wait_status_requests(a, 1, 3)
    h = a.health_requests[0]
    assert h.method == "GET" and h.path == "/v1/models"
    # real upstreams (OpenAI's /v1/models) need the key for the health check too
    assert h.header("authorization") == "Bearer sk-h", h.headers
    a.health_status = 503
    assert _wait_status_requests(a, 2, 4)
    time.sleep(0.3)
    na = len(a.chats())
    for _ in range(8):
        assert gw.chat("m").status == 200
    assert len(a.chats()) == na, "a marked unhealthy still got traffic"
    assert len(b.chats()) >= 8
    assert _endpoint_up(gw) == {"a": 0.0, "b": 1.0}
    # back up
    a.health_status = 200
    assert _wait_status_requests(a, 1, 3)
    time.sleep(0.3)
    for _ in range(8):
        assert gw.chat("m").status == 200
    assert len(a.chats()) - na == 4
    assert _endpoint_up(gw) == {"a": 1.0, "b": 1.0}


def _endpoint_up(gw, provider="p"):
    """{endpoint: value} of the endpoint health gauge (umbra_endpoint_up or alike)."""
    import re
    out = {}
    for ln in gw.metrics().splitlines():
        m = re.match(r'^(umbra_endpoint_\w*(?:up|health)\w*)\{(.*)\}\s+(\S+)$', ln)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if labels.get("provider") == provider:
                out[labels.get("endpoint")] = float(m.group(3))
    return out


def test_health_check_timeout_marks_down(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.health_delay = 5  # never answers within timeout_s
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("a", a), ep("b", b), health_check={
        "interval_s": 1, "timeout_s": 1, "unhealthy_after": 1})], [{"name": "m", "provider": "p"}]))
    time.sleep(2.6)
    for _ in range(6):
        assert gw.chat("m").status == 200
    assert len(a.chats()) == 0 and len(b.chats()) == 6


def test_dead_endpoint_at_start_connect_refused(make_gateway, make_fake):
    b = make_fake(name="b")
    dead = "http://127.0.0.1:%d" % free_port()
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("dead", dead), ep("b", b))],
                                  [{"name": "m", "provider": "p"}]))
    t0 = time.monotonic()
    for _ in range(10):
        r = gw.chat("m")
        assert r.status == 200, r
    assert time.monotonic() - t0 < 5
    assert len(b.chats()) == 10
    r, events, _ = gw.stream(chat_body("m", stream=True))
    assert httpc.sse_data(events)[-1] == "[DONE]"


def _failover(make_gateway, make_fake, bad):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.default = bad
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("a", a), ep("b", b))], [{"name": "m", "provider": "p"}]))
    for i in range(6):
        r = gw.chat("m", headers={"x-request-id": "fo-%d" % i})
        assert r.status == 200, r
        assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    r, events, _ = gw.stream(chat_body("m", stream=True))
    assert r.status == 200 and httpc.sse_data(events)[-1] == "[DONE]"
    assert len(b.chats()) == 7
    assert len(a.chats()) >= 1
    # the client's body reached b unchanged after the failed try
    assert b.chats()[0].json() == chat_body("m")
    return gw, a, b


def test_failover_on_5xx(make_gateway, make_fake):
    gw, a, b = _failover(make_gateway, make_fake, Behavior(status=500))
    time.sleep(0.2)
    tried_a = [l for l in gw.request_logs() if l.get("id", "").startswith("fo-") and l.get("attempts") == 2]
    assert tried_a, gw.request_logs()


def test_failover_on_503(make_gateway, make_fake):
    _failover(make_gateway, make_fake, Behavior(status=503))


def test_failover_on_429(make_gateway, make_fake):
    _failover(make_gateway, make_fake, Behavior(status=429, retry_after=30))


def test_failover_on_garbage(make_gateway, make_fake):
    _failover(make_gateway, make_fake, Behavior(garbage=True))


def test_failover_on_reset(make_gateway, make_fake):
    _failover(make_gateway, make_fake, Behavior(close_without_answer=True))


def test_failover_on_stream_error_before_first_byte(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.default = Behavior(status=502)
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("a", a), ep("b", b))], [{"name": "m", "provider": "p"}]))
    for _ in range(4):
        r, events, _ = gw.stream(chat_body("m", stream=True))
        assert r.status == 200
        data = httpc.sse_data(events)
        assert data[-1] == "[DONE]" and not any("error" in d for d in data[:-1])
        # one role chunk only: nothing from the failed attempt leaked into the stream
        assert sum(1 for d in data[:-1] if d["choices"] and d["choices"][0]["delta"].get("role")) == 1


def test_max_attempts_bounds_retries(make_gateway, make_fake):
    fakes = [make_fake(name="f%d" % i) for i in range(5)]
    for f in fakes:
        f.default = Behavior(status=500)
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", *[ep("e%d" % i, f) for i, f in enumerate(fakes)],
                                                  max_attempts=2)], [{"name": "m", "provider": "p"}]))
    r = gw.chat("m", headers={"x-request-id": "bounded-1"})
    assert_openai_error(r, 502, "api_error", "upstream_error")
    assert sum(len(f.chats()) for f in fakes) == 2
    tried = [i for i, f in enumerate(fakes) if f.chats()]
    assert len(tried) == 2, "the retry must go to a different endpoint"
    time.sleep(0.2)
    log = [l for l in gw.request_logs() if l.get("id") == "bounded-1"]
    assert len(log) == 1 and log[0]["attempts"] == 2 and log[0]["status"] == 502


def test_fallbacks_chain(make_gateway, make_fake):
    a, b, c = make_fake(name="a"), make_fake(name="b"), make_fake(name="c")
    a.default = Behavior(status=503)
    b.default = Behavior(status=500)
    port = free_port()
    gw = make_gateway(base_config(port, [
        provider("pa", a, max_attempts=1), provider("pb", b, max_attempts=1), provider("pc", c, max_attempts=1),
    ], [
        {"name": "primary", "provider": "pa", "upstream_model": "a-model", "fallbacks": ["second", "third"]},
        {"name": "second", "provider": "pb", "upstream_model": "b-model"},
        {"name": "third", "provider": "pc", "upstream_model": "c-model"},
    ]))
    r = gw.chat("primary", headers={"x-request-id": "fb-1"})
    assert r.status == 200, r
    assert r.header("x-umbra-provider") == "pc"
    assert [x.json()["model"] for x in a.chats()] == ["a-model"]
    assert [x.json()["model"] for x in b.chats()] == ["b-model"]
    assert [x.json()["model"] for x in c.chats()] == ["c-model"]
    assert a.chats()[0].received_at < b.chats()[0].received_at < c.chats()[0].received_at
    # only the model name differs between the three attempts
    for x in (a, b, c):
        body = x.chats()[0].json()
        body.pop("model")
        assert body == {"messages": [{"role": "user", "content": "hi"}]}
    r, events, _ = gw.stream(chat_body("primary", stream=True))
    assert httpc.sse_data(events)[-1] == "[DONE]"
    assert c.chats()[-1].json()["model"] == "c-model"
    time.sleep(0.2)
    log = [l for l in gw.request_logs() if l.get("id") == "fb-1"]
    assert len(log) == 1 and log[0]["provider"] == "pc" and log[0]["attempts"] == 3
    # every option exhausted: the error of the last one
    c.default = Behavior(status=500)
    r = gw.chat("primary")
    assert_openai_error(r, 502, "api_error", "upstream_error")


def test_fallback_not_used_for_client_errors(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    port = free_port()
    gw = make_gateway(base_config(port, [provider("pa", a), provider("pb", b)], [
        {"name": "primary", "provider": "pa", "fallbacks": ["second"]},
        {"name": "second", "provider": "pb"},
    ]))
    r = gw.post("/v1/chat/completions", json_body={"model": "primary", "messages": "bad"})
    assert r.status == 400
    assert a.posts() == [] and b.posts() == []


def test_ejection_after_repeated_failures_and_retry_with_backoff(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.default = Behavior(status=500)
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("a", a), ep("b", b), max_attempts=2, ejection={
        "consecutive_failures": 2, "base_ms": 1500, "max_ms": 6000})], [{"name": "m", "provider": "p"}]))
    t0 = time.monotonic()
    for _ in range(12):
        assert gw.chat("m").status == 200
    assert time.monotonic() - t0 < 1.4
    assert len(a.chats()) == 2, "a should be ejected after 2 consecutive failures"
    assert _endpoint_up(gw) == {"a": 0.0, "b": 1.0}
    time.sleep(1.8)  # ejection (1.5 s) over: a is tried again
    for _ in range(6):
        assert gw.chat("m").status == 200
    n = len(a.chats())
    assert n in (3, 4), "after the backoff a is tried again (and soon ejected again): %d" % n
    time.sleep(1.8)  # second ejection is 3 s (doubled): still out
    for _ in range(6):
        assert gw.chat("m").status == 200
    assert len(a.chats()) == n, "the second ejection must last longer (base_ms doubled)"
    # recovered endpoint comes back after its backoff
    a.default = Behavior()
    time.sleep(1.5)
    for _ in range(8):
        assert gw.chat("m").status == 200
    assert len(a.chats()) >= 6


def _drop(conn):
    s = conn.sock
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()


def test_client_disconnect_cancels_upstream_stream(gateway, fake):
    fake.script(Behavior(content=" ".join("w%d" % i for i in range(100)), chunk_interval=0.1))
    c = gateway.conn()
    c.send_request("POST", "/v1/chat/completions", __import__("json").dumps(chat_body("m", stream=True)).encode(),
                   {"Content-Type": "application/json"})
    r = c.read_head()
    assert r.status == 200
    it = c.iter_sse(r)
    next(it)
    next(it)
    c.close()
    t_close = time.monotonic()
    assert fake.wait_for(lambda: fake.chats()[0].closed_at is not None, 3)
    lag = fake.chats()[0].closed_at - t_close
    assert lag < 1.0, "upstream connection closed %.2fs after the client left" % lag
    assert len(fake.chats()[0].sent_events) < 30
    assert gateway.chat("m").status == 200


def test_client_disconnect_cancels_upstream_nonstream(gateway, fake):
    fake.script(Behavior(first_byte_delay=20))
    c = gateway.conn()
    c.send_request("POST", "/v1/chat/completions", b'{"model":"m","messages":[{"role":"user","content":"x"}]}',
                   {"Content-Type": "application/json"})
    assert fake.wait_for(lambda: len(fake.chats()) == 1, 3)
    time.sleep(0.2)
    c.close()
    t_close = time.monotonic()
    assert fake.wait_for(lambda: fake.chats()[0].closed_at is not None, 3)
    assert fake.chats()[0].closed_at - t_close < 1.0
    assert len(fake.chats()) == 1, "a cancelled request must not be retried elsewhere"
    assert gateway.chat("m").status == 200


def test_backup_endpoint_only_when_primaries_down(make_gateway, make_fake):
    a, bk = make_fake(name="a"), make_fake(name="backup")
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("a", a), ep("bk", bk, backup=True), health_check={
        "interval_s": 1, "timeout_s": 1, "unhealthy_after": 1, "healthy_after": 1})],
        [{"name": "m", "provider": "p"}]))
    for _ in range(6):
        assert gw.chat("m").status == 200
    assert len(a.chats()) == 6 and bk.chats() == []
    a.health_status = 503
    assert _wait_status_requests(a, 2, 4)
    time.sleep(0.2)
    for _ in range(4):
        assert gw.chat("m").status == 200
    assert len(bk.chats()) == 4, "backup not used while the primary is down"
    a.health_status = 200
    assert _wait_status_requests(a, 2, 4)
    time.sleep(0.2)
    n = len(bk.chats())
    for _ in range(4):
        assert gw.chat("m").status == 200
    assert len(bk.chats()) == n, "backup still used after the primary came back"


def test_all_endpoints_429(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.default = Behavior(status=429, retry_after=7)
    b.default = Behavior(status=429, retry_after=3)
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", a, b)], [{"name": "m", "provider": "p"}]))
    r = gw.chat("m")
    assert_openai_error(r, 429, "rate_limit_error")
    assert r.header("retry-after") in ("3", "7"), r.headers
    assert len(a.chats()) == 1 and len(b.chats()) == 1


def test_upstream_401_is_gateway_problem(make_gateway, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake, api_key="sk-wrong", max_attempts=1)],
                                  [{"name": "m", "provider": "p"}]))
    fake.default = Behavior(status=401)
    r = gw.chat("m")
    assert r.status == 502, "an upstream 401 is about the gateway's key, not the client's: %r" % r
    assert_openai_error(r, 502, "api_error")


def test_health_check_custom_path(make_gateway, make_fake):
    a = make_fake(name="a")
    a.health_path = "/healthz"
    a.health_status = 503
    b = make_fake(name="b")
    b.health_path = "/healthz"
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", ep("a", a), ep("b", b), health_check={
        "path": "/healthz", "interval_s": 1, "timeout_s": 1, "unhealthy_after": 1})],
        [{"name": "m", "provider": "p"}]))
    assert a.wait_for(lambda: len(a.health_requests) >= 1, 3)
    assert a.health_requests[0].path == "/healthz"
    time.sleep(0.3)
    for _ in range(4):
        assert gw.chat("m").status == 200
    assert a.chats() == [] and len(b.chats()) == 4
