"""Edge cases of the proxy: connect timeouts against a black hole, truncated
upstream bodies, hop-by-hop and credential headers, connection limits,
several workers, fallback cycles and unhealthy fallbacks, aborted uploads."""

import json
import socket
import threading
import time

import pytest

import httpc
from conftest import Behavior, assert_openai_error, base_config, chat_body, free_port, provider


class BlackHole:
    """A listening socket that never accepts, its backlog full: connects hang."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port = self.listener.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.fill = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self.fill.append(s)
        time.sleep(0.1)

    def close(self):
        for s in self.fill + [self.listener]:
            s.close()


@pytest.fixture
def blackhole():
    b = BlackHole()
    yield b
    b.close()


def test_connect_timeout_504(make_gateway, blackhole):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", blackhole.url, timeouts={"connect_ms": 300}, max_attempts=1)],
                                  [{"name": "m", "provider": "p"}]))
    t0 = time.monotonic()
    r = gw.chat("m")
    took = time.monotonic() - t0
    assert_openai_error(r, 504, "api_error", "upstream_timeout")
    assert took < 2.0, took


def test_connect_timeout_fails_over(make_gateway, blackhole, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", {"name": "hole", "url": blackhole.url},
                                                  {"name": "good", "url": fake.url}, timeouts={"connect_ms": 300})],
                                  [{"name": "m", "provider": "p"}]))
    t0 = time.monotonic()
    for _ in range(4):
        assert gw.chat("m").status == 200
    assert time.monotonic() - t0 < 3.0
    assert len(fake.chats()) == 4


def test_truncated_upstream_body_502(make_gateway, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake, max_attempts=1)], [{"name": "m", "provider": "p"}]))
    fake.script(Behavior(truncate_body=True))
    r = gw.chat("m")
    assert_openai_error(r, 502, "api_error", "upstream_error")
    assert gw.chat("m").status == 200


def test_truncated_upstream_body_fails_over(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.default = Behavior(truncate_body=True)
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", a, b)], [{"name": "m", "provider": "p"}]))
    for _ in range(4):
        r = gw.chat("m")
        assert r.status == 200, r
        r.json()


def test_hop_by_hop_and_proxy_credentials_not_forwarded(gateway, fake):
    hdrs = [("Proxy-Authorization", "Basic c2VjcmV0OnNlY3JldA=="), ("Connection", "keep-alive, X-Drop-Me"),
            ("X-Drop-Me", "1"), ("Upgrade", "h2c"), ("TE", "trailers"), ("Keep-Alive", "timeout=5"),
            ("Host", "client.example"), ("X-Custom", "kept?")]
    with gateway.conn() as c:
        r = c.request("POST", "/v1/chat/completions", json_body=chat_body("m"), headers=hdrs)
        assert r.status == 200, r
    up = fake.chats()[0]
    for h in ("proxy-authorization", "x-drop-me", "upgrade", "te", "keep-alive"):
        assert up.header(h) is None, (h, up.headers)
    assert up.header("host") != "client.example", "the upstream Host must be the upstream's"
    assert int(up.header("content-length")) == len(up.body)
    assert (up.header("connection") or "").lower() in ("", "keep-alive")


def test_header_names_case_insensitive(gateway, fake):
    body = json.dumps(chat_body("m")).encode()
    with gateway.conn() as c:
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHOST: x\r\nCONTENT-TYPE: application/json\r\n"
               b"CONTENT-LENGTH: %d\r\nX-REQUEST-ID: UPPER-1\r\n\r\n%s" % (len(body), body))
        r = c.read_body(c.read_head(), "POST")
        assert r.status == 200, r
        assert r.header("x-request-id") == "UPPER-1"
        c.send(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n"
               b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        r = c.read_body(c.read_head(), "POST")
        assert r.status == 200, r
    assert [x.body for x in fake.chats()] == [body, body]


def test_method_not_allowed(gateway, fake):
    for method, path in (("PUT", "/v1/chat/completions"), ("DELETE", "/v1/models"), ("POST", "/health")):
        r = httpc.request(gateway.port, method, path, body=b"{}")
        assert r.status in (404, 405), (method, path, r)
        json.loads(r.body)["error"]
    assert fake.posts() == []


def test_max_connections(make_gateway, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p"}],
                                  limits={"max_connections": 4}))
    held = [gw.conn() for _ in range(4)]
    for c in held:
        assert c.request("GET", "/health").status == 200
    extra = socket.create_connection(("127.0.0.1", port), timeout=3)
    extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = extra.recv(4096)
    except (socket.timeout, ConnectionResetError):
        data = b""
    assert not data.startswith(b"HTTP/1.1 200"), "a 5th connection served past max_connections=4"
    extra.close()
    for c in held:
        c.close()
    time.sleep(0.3)
    assert gw.chat("m").status == 200


def test_two_workers_share_config_and_metrics(make_gateway, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p", "upstream_model": "w1"}],
                                  workers=2))
    conns = [gw.conn() for _ in range(8)]
    for i in range(24):
        r = conns[i % 8].request("POST", "/v1/chat/completions", json_body=chat_body("m"))
        assert r.status == 200
    for c in conns:
        c.close()
    time.sleep(0.2)
    text = gw.metrics()
    tot = 0.0
    for ln in text.splitlines():
        if ln.startswith("umbra_requests_total{") and 'model="m"' in ln and 'status="200"' in ln:
            tot += float(ln.split()[-1])
    assert tot == 24, text
    gw.reload(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p", "upstream_model": "w2"}],
                          workers=2))
    time.sleep(1.0)
    for _ in range(10):  # new connections, whichever worker takes them
        assert gw.chat("m").status == 200
    assert {x.json()["model"] for x in fake.chats()[-10:]} == {"w2"}


def test_fallback_cycle_is_bounded(make_gateway, make_fake, tmp_path):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.default = b.default = Behavior(status=500)
    port = free_port()
    cfg = base_config(port, [provider("pa", a, max_attempts=1), provider("pb", b, max_attempts=1)], [
        {"name": "x", "provider": "pa", "fallbacks": ["y"]},
        {"name": "y", "provider": "pb", "fallbacks": ["x"]},
    ])
    from conftest import UMBRA_BIN, to_yaml, run_check  # noqa: F401
    path = tmp_path / "cycle.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    chk = run_check(str(path))
    if chk.returncode != 0:
        assert b"cycle.yaml:" in chk.stdout + chk.stderr  # rejected with a location: fine
        return
    gw = make_gateway(cfg)
    t0 = time.monotonic()
    r = gw.chat("x")
    assert r.status == 502, r
    assert time.monotonic() - t0 < 3
    assert len(a.chats()) + len(b.chats()) <= 4


def test_fallback_skips_unhealthy_provider(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.health_status = 503
    port = free_port()
    gw = make_gateway(base_config(port, [
        provider("pa", a, health_check={"interval_s": 1, "timeout_s": 1, "unhealthy_after": 1}),
        provider("pb", b),
    ], [
        {"name": "x", "provider": "pa", "fallbacks": ["y"]},
        {"name": "y", "provider": "pb", "upstream_model": "y-up"},
    ]))
    assert a.wait_for(lambda: len(a.health_requests) >= 1, 3)
    time.sleep(0.3)
    r = gw.chat("x")
    assert r.status == 200, r
    assert a.chats() == []
    assert b.chats()[0].json()["model"] == "y-up"


def test_client_aborts_upload(gateway, fake):
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 5000\r\n\r\n" + json.dumps(chat_body("m")).encode()[:-1])
        s.close()
    time.sleep(0.3)
    assert fake.posts() == [], "an incomplete body was forwarded"
    assert gateway.chat("m").status == 200


def test_client_disconnect_during_failover(make_gateway, make_fake):
    a, b = make_fake(name="a"), make_fake(name="b")
    a.default = Behavior(first_byte_delay=0.5, status=500)
    b.default = Behavior(first_byte_delay=10)
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", {"name": "a", "url": a.url, "weight": 100},
                                                  {"name": "b", "url": b.url, "weight": 1})],
                                  [{"name": "m", "provider": "p"}]))
    c = gw.conn()
    c.send_request("POST", "/v1/chat/completions", json.dumps(chat_body("m")).encode(),
                   {"Content-Type": "application/json"})
    assert b.wait_for(lambda: len(b.chats()) == 1, 5), "failover to b did not happen"
    c.close()
    t = time.monotonic()
    assert b.wait_for(lambda: b.chats()[0].closed_at is not None, 3)
    assert b.chats()[0].closed_at - t < 1.0
    assert gw.get("/health").status == 200


def test_tls_handshake_timeout(make_gateway, fake, certs):
    import ssl
    port = free_port()
    ctx = ssl.create_default_context(cafile=certs["ca"])
    gw = make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p"}],
                                  tls={"cert": certs["cert"], "key": certs["key"]},
                                  limits={"header_timeout_ms": 1000}), tls_ctx=ctx)
    silent = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
    assert gw.chat("m").status == 200
    t0 = time.monotonic()
    for s in silent:
        s.settimeout(max(0.1, 4.0 - (time.monotonic() - t0)))
        try:
            d = s.recv(100)
        except socket.timeout:
            pytest.fail("silent TLS connection kept open > 4 s with header_timeout_ms=1000")
        except OSError:
            d = b""
        assert d == b"" or d[:1] == b"\x15", d  # closed, or a TLS alert
        s.close()
    assert gw.chat("m").status == 200


def test_metrics_scrapes_during_load(gateway, fake):
    fake.default = Behavior(chunk_interval=0.01)
    errors = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            r, events, _ = gateway.stream(chat_body("m", stream=True))
            if r.status != 200 or httpc.sse_data(events)[-1] != "[DONE]":
                errors.append(r)

    ts = [threading.Thread(target=load) for _ in range(6)]
    for t in ts:
        t.start()
    try:
        for _ in range(40):
            text = gateway.metrics()
            assert "umbra_requests_total" in text
            for ln in text.splitlines():
                assert ln.startswith("#") or not ln or len(ln.split()) in (2, 3), ln
    finally:
        stop.set()
        for t in ts:
            t.join(10)
    assert not errors, errors[:3]
