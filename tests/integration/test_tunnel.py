"""Dark services through the connector tunnel (docs/tunnel.md, issue 4).

A. test_netns_dark_service: three network namespaces (client, gateway,
   modelhost). The model server and `umbra connect` run in modelhost, which
   has no listening socket on any non-loopback address and refuses every TCP
   port from the gateway and the client, yet the client's chat requests reach
   the model through the tunnel the connector dialled out. Revocation of the
   connector cuts the service within about a second; a new connector identity
   restores it; a caller outside `users` gets 403 service_not_allowed.
B. Faults on loopback: a connector killed mid-stream, a gateway restart,
   500 concurrent streams, client disconnect, load balancing, bind policy,
   connector drain; extras: a non-streaming request in flight when its
   connector dies, a slow client stalling the model server (backpressure).
A'. test_netns_partition_keepalive: a silent partition of modelhost must be
   detected by the gateway's PING keepalive within interval + timeout.

Every gateway runs TLS with a `umbra pki` CA; callers use client
certificates (auth.mode certs); connectors have `--kind connector`
identities registered in the gateway's store.
"""

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

import httpc
import netns_util
from conftest import (SANITIZER_MARKS, UMBRA_BIN, Behavior, FakeUpstream, Gateway, JsonLog, assert_openai_error, free_port,
                      to_yaml)
from pki_util import Pki

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICE = "dark"
MODEL = "llama"


def say(*a):
    print("[tunnel]", *a, flush=True)


# ------------------------------------------------------------ processes ----

class Connector(JsonLog):
    """One `umbra connect -c FILE` process (optionally inside a namespace)."""

    def __init__(self, workdir, name, identity, gateways, services, pki_dir, prefix=(), extra=None):
        self.dir = str(workdir)
        self.name = name
        self.identity = identity
        self.cfg = {
            "identity": {"cert": "%s/%s.crt" % (pki_dir, identity), "key": "%s/%s.key" % (pki_dir, identity),
                         "ca": "%s/ca.crt" % pki_dir},
            "gateways": list(gateways),
            "services": [{"name": n, "upstream": u} for n, u in services],
            "reconnect_base_ms": 100,
            "reconnect_max_ms": 1000,
            "drain_timeout_ms": 4000,  # bounds the teardown's SIGTERM when a test left a stream open
            "log": {"level": "debug"},
        }
        self.cfg.update(extra or {})
        self.cfg_path = os.path.join(self.dir, name + ".yaml")
        self.log_path = os.path.join(self.dir, name + ".log")
        self.prefix = list(prefix)
        self.proc = None
        self.expect_exit = False
        self.signalled = set()

    def start(self):
        with open(self.cfg_path, "w") as f:
            f.write(to_yaml(self.cfg) + "\n")
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.prefix + [UMBRA_BIN, "connect", "-c", self.cfg_path], stdout=self.logf,
                                     stderr=self.logf, stdin=subprocess.DEVNULL, cwd="/")
        return self

    @property
    def pid(self):
        return self.proc.pid

    def count(self, msg):
        return sum(1 for l in self.logs() if l.get("msg") == msg)

    def wait_log(self, pred, timeout=5.0, after=0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for l in self.logs()[after:]:
                if pred(l):
                    return l
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        return None

    def signal(self, sig):
        self.signalled.add(sig)
        self.proc.send_signal(sig)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.signalled.add(signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(5)

    def problems(self):
        text = self.log_text()
        for m in SANITIZER_MARKS:
            if m in text:
                return "sanitizer report in %s:\n%s" % (self.log_path, self.tail(80))
        rc = self.proc.poll() if self.proc else None
        if rc is not None and rc < 0 and -rc not in self.signalled:
            return "connector %s died of signal %d:\n%s" % (self.name, -rc, self.tail(60))
        if rc is not None and rc > 0 and not self.expect_exit:
            return "connector %s exited %d unexpectedly:\n%s" % (self.name, rc, self.tail(60))
        return None


class NsGateway(Gateway):
    """A gateway run with `ip netns exec NS`, health-checked from inside NS."""

    def __init__(self, workdir, name, cfg, ns, host, tls_ctx):
        super().__init__(workdir, name, cfg, tls_ctx=tls_ctx)
        self.ns = ns
        self.host = host

    def start(self, wait=True):
        self.write_config()
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, UMBRA_BIN, "serve", "-c", self.cfg_path],
                                     stdout=self.logf, stderr=self.logf, stdin=subprocess.DEVNULL, cwd="/")
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=15):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.expect_exit = True
                raise AssertionError("umbra exited with %s during start-up:\n%s" % (self.proc.returncode, self.tail()))
            try:
                with netns_util.in_netns(self.ns):
                    c = httpc.Conn(self.port, host=self.host, tls=self.tls_ctx, timeout=2)
                with c:
                    r = c.request("GET", "/health", headers={"Connection": "close"})
                if r.status == 200:
                    return
                last = r
            except (OSError, httpc.ConnectionClosed) as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("umbra not healthy after %.0fs (last: %r):\n%s" % (timeout, last, self.tail()))


class Procs:
    """Owns every gateway, connector and fake of one test; teardown stops them
    (SIGTERM, then SIGKILL) and fails the test on a crash or sanitizer report."""

    def __init__(self, request, tmp_path):
        self.request = request
        self.dir = str(tmp_path)
        self.gateways = []
        self.connectors = []
        self.fakes = []
        self.children = []  # other Popen objects (fakes in namespaces)
        request.node.umbra_gateways = self.gateways

    def fake(self, name, **kw):
        f = FakeUpstream(name=name, **kw).start()
        self.fakes.append(f)
        return f

    def gateway(self, cfg, name="gw", tls_ctx=None, cls=Gateway, wait=True, **kw):
        g = cls(self.dir, name, cfg, tls_ctx=tls_ctx, **kw)
        self.gateways.append(g)
        return g.start(wait=wait)

    def connector(self, *a, **kw):
        c = Connector(self.dir, *a, **kw)
        self.connectors.append(c)
        return c.start()

    def teardown(self):
        problems = []
        for c in self.connectors:
            if c.proc is not None and c.proc.poll() is None:
                c.signal(signal.SIGTERM)
                try:
                    c.proc.wait(7)
                except subprocess.TimeoutExpired:
                    c.kill()
                    problems.append("connector %s did not exit within 7 s of SIGTERM:\n%s" % (c.name, c.tail(20)))
            p = c.problems()
            if p:
                problems.append(p)
        for g in self.gateways:
            if g.proc is not None and g.proc.poll() is None:
                g.signal(signal.SIGTERM)
                try:
                    g.proc.wait(8)
                except subprocess.TimeoutExpired:
                    g.kill()
                    problems.append("umbra did not exit within 8 s of SIGTERM at teardown:\n" + g.tail(30))
            p = g.problems()
            if p:
                problems.append(p)
        for p in self.children:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        for f in self.fakes:
            f.stop()
        for o in self.gateways + self.connectors:
            try:
                o.logf.close()
            except Exception:
                pass
        return problems


@pytest.fixture
def procs(request, tmp_path, umbra_bin):
    ps = Procs(request, tmp_path)
    yield ps
    problems = ps.teardown()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


# ----------------------------------------------------------------- setup ----

def make_pki(tmp_path, gw_ips=("127.0.0.1",)):
    pki = Pki(tmp_path, cfg_name="gw.yaml").init()
    pki.issue("gw", kind="gateway", dns=["localhost"], ip=list(gw_ips), register=False)
    return pki


def gateway_config(pki, port, tunnel_port, hosts, users, endpoints=None, listen_host="127.0.0.1",
                   tunnel_host="127.0.0.1", **extra):
    """TLS (client certs, auth.mode certs), the tunnel, one service and one
    model whose provider's endpoints are `service:` endpoints."""
    eps = endpoints or [{"name": "dark-1", "service": SERVICE}]
    cfg = {
        "listen": "%s:%d" % (listen_host, port),
        "workers": 1,
        "log": {"level": "info", "requests": True},
        "tls": pki.tls_config("optional"),
        "store": "sqlite://umbra.db",
        "auth": {"mode": "certs"},
        "metrics": {"public": True},
        "tunnel": {"listen": "%s:%d" % (tunnel_host, tunnel_port), "ping_interval_ms": 1000,
                   "ping_timeout_ms": 2000},
        "services": [{"name": SERVICE, "hosts": list(hosts), "users": list(users)}],
        "providers": [{"name": "onprem", "type": "openai", "endpoints": eps}],
        "models": [{"name": MODEL, "provider": "onprem"}],
    }
    cfg.update(extra)
    pki.write_config(cfg)
    return cfg


def tunnel_metric(gw, name="umbra_tunnel_connectors"):
    """Sum of a tunnel metric's samples (None when absent)."""
    text = gw.metrics()
    tot = None
    for ln in text.splitlines():
        if ln.startswith(name + " ") or ln.startswith(name + "{"):
            tot = (tot or 0) + float(ln.rsplit(" ", 1)[1])
    return tot


def wait_connectors(gw, n, timeout=10.0):
    end = time.monotonic() + timeout
    v = None
    while time.monotonic() < end:
        try:
            v = tunnel_metric(gw)
        except (OSError, httpc.ConnectionClosed, AssertionError):
            v = None
        if v == n:
            return time.monotonic()
        time.sleep(0.03)
    raise AssertionError("umbra_tunnel_connectors is %r, not %d after %.0f s:\n%s" % (v, n, timeout, gw.tail(20)))


def body(stream=False, content="hi", model=MODEL):
    b = {"model": model, "messages": [{"role": "user", "content": content}]}
    if stream:
        b["stream"] = True
    return b


def chat(gw, ctx, stream=False, content="hi", timeout=10, rid=None):
    h = {"Connection": "close"}
    if rid:
        h["x-request-id"] = rid
    if stream:
        return httpc.stream(gw.port, body(True, content), h, timeout, tls=ctx)
    return httpc.request(gw.port, "POST", "/v1/chat/completions", json_body=body(False, content), headers=h,
                         tls=ctx, timeout=timeout)


def assert_chat_ok(r, content):
    assert r.status == 200, r
    j = r.json()
    assert j["object"] == "chat.completion", j
    assert j["choices"][0]["message"]["content"] == content, j


def stream_text(events):
    """(content joined, saw [DONE], finish_reason) of an SSE event list."""
    parts, done, finish = [], False, None
    for d in httpc.sse_data(events):
        if d == "[DONE]":
            done = True
            continue
        assert "error" not in d, d
        for ch in d.get("choices") or []:
            c = (ch.get("delta") or {}).get("content")
            if c:
                parts.append(c)
            if ch.get("finish_reason"):
                finish = ch["finish_reason"]
    return "".join(parts), done, finish


def assert_stream_ok(res, content):
    r, events, _ = res
    assert r.status == 200, r
    assert (r.header("content-type") or "").startswith("text/event-stream"), r.headers
    text, done, finish = stream_text(events)
    assert text == content, (text, content)
    assert done and finish == "stop", (done, finish, events[-3:])


def request_log(gw, rid, timeout=3.0):
    l = gw.wait_log(lambda l: l.get("msg") == "request" and l.get("id") == rid, timeout)
    assert l is not None, "no request log line with id %s:\n%s" % (rid, gw.tail(15))
    return l


# ====================================================== B. loopback faults ==

class Loop:
    """One loopback gateway with its PKI, ready for connectors."""

    def __init__(self, procs, tmp_path, hosts=("conn-1", "conn-2"), users=("team-a",), endpoints=None, **extra):
        self.procs = procs
        self.pki = make_pki(tmp_path)
        self.port = free_port()
        self.tport = free_port()
        self.cfg = gateway_config(self.pki, self.port, self.tport, hosts, users, endpoints, **extra)
        for name in hosts:
            self.pki.issue(name, kind="connector")
        self.pki.issue("alice", kind="client", team="team-a")
        self.ctx = self.pki.ctx("alice")
        self.gw = procs.gateway(self.cfg, tls_ctx=self.pki.ctx())

    def connector(self, identity, fake, name=None, **kw):
        return self.procs.connector(name or identity, identity, ["127.0.0.1:%d" % self.tport],
                                    [(SERVICE, fake.url)], self.pki.pki_rel, **kw)


def metric(gw, name, label=None):
    """A metric's value (the sample whose labels contain `label`), or None."""
    for ln in gw.metrics().splitlines():
        if ln.startswith(name + " ") or (ln.startswith(name + "{") and (label is None or label in ln)):
            return float(ln.rsplit(" ", 1)[1])
    return None


def slow_handler(fake, words=400, interval=0.05):
    """Streams whose last message starts with "slow" get `words` words
    `interval` s apart; the words are s0 s1 ..."""
    text = " ".join("s%d" % i for i in range(words))

    def handler(req):
        try:
            b = req.json()
        except ValueError:
            return None
        msgs = b.get("messages") or [{}]
        if b.get("stream") and str(msgs[-1].get("content", "")).startswith("slow"):
            return Behavior(chunk_interval=interval, content=text)
        return None

    fake.handler = handler
    return text


class StreamReader(threading.Thread):
    """Reads one streaming chat in the background, keeping every event and
    how it ended (complete, error event, closed, exception)."""

    def __init__(self, gw, ctx, content="slow", timeout=20.0, rid=None):
        super().__init__(daemon=True)
        self.gw, self.ctx, self.content, self.timeout, self.rid = gw, ctx, content, timeout, rid
        self.status = None
        self.events = []
        self.error = None
        self.ended = None
        self.conn = None
        self.first_event = threading.Event()

    def run(self):
        try:
            h = {"Connection": "close", "Content-Type": "application/json"}
            if self.rid:
                h["x-request-id"] = self.rid
            self.conn = c = httpc.Conn(self.gw.port, tls=self.ctx, timeout=self.timeout)
            c.send_request("POST", "/v1/chat/completions", json.dumps(body(True, self.content)).encode(), h)
            r = c.read_head()
            self.status = r.status
            for _, ev in c.iter_sse(r):
                self.events.append(ev)
                self.first_event.set()
        except (OSError, httpc.ConnectionClosed, ValueError, AssertionError) as e:
            self.error = e
        finally:
            self.ended = time.monotonic()
            self.first_event.set()
            if self.conn:
                self.conn.close()

    def data(self):
        return httpc.sse_data([(0, e) for e in self.events])


def which_fake(fakes, content):
    """The fake that received a chat whose last message is `content`."""
    hits = [f for f in fakes if any(r.json()["messages"][-1]["content"] == content for r in f.chats())]
    assert len(hits) == 1, [f.name for f in hits]
    return hits[0]


def poll_until_ok(gw, ctx, deadline, content="ok"):
    """Requests until one is 200 (answer `content`); returns (seconds, [non-200 statuses seen])."""
    t0 = time.monotonic()
    seen = []
    while time.monotonic() - t0 < deadline:
        try:
            r = chat(gw, ctx, timeout=5)
        except (OSError, httpc.ConnectionClosed) as e:
            seen.append(repr(e))
            time.sleep(0.02)
            continue
        if r.status == 200:
            assert_chat_ok(r, content)
            return time.monotonic() - t0, seen
        seen.append((r.status, (r.json().get("error") or {}).get("code") if r.body.startswith(b"{") else r.body[:80]))
        time.sleep(0.02)
    raise AssertionError("no 200 within %.0f s; saw %r\n%s" % (deadline, seen[-5:], gw.tail(20)))


def test_loopback_smoke(procs, tmp_path):
    env = Loop(procs, tmp_path)
    fake = procs.fake("f1")
    fake.default = Behavior(content="from the dark side")
    env.connector("conn-1", fake)
    wait_connectors(env.gw, 1)
    assert_chat_ok(chat(env.gw, env.ctx, rid="smoke-1"), "from the dark side")
    assert_stream_ok(chat(env.gw, env.ctx, stream=True), "from the dark side")
    l = request_log(env.gw, "smoke-1")
    assert (l["status"], l["endpoint"], l["attempts"]) == (200, "dark-1", 1), l
    assert metric(env.gw, "umbra_tunnel_service_hosts", 'service="dark"') == 1


# B1
def test_kill9_connector_mid_stream(procs, tmp_path):
    env = Loop(procs, tmp_path)
    f1, f2 = procs.fake("f1"), procs.fake("f2")
    words = slow_handler(f1).split(" ")
    slow_handler(f2)
    f1.default = f2.default = Behavior(content="ok")
    c1 = env.connector("conn-1", f1)
    c2 = env.connector("conn-2", f2)
    wait_connectors(env.gw, 2)
    st = StreamReader(env.gw, env.ctx, rid="b1-victim")
    st.start()
    assert st.first_event.wait(5) and st.status == 200, (st.status, st.error)
    time.sleep(0.3)
    serving = which_fake([f1, f2], "slow")
    victim, survivor_fake = (c1, f2) if serving is f1 else (c2, f1)
    say("stream served via %s; kill -9 pid %d" % (victim.name, victim.pid))
    victim.kill()
    t_kill = time.monotonic()
    st.join(5)
    assert not st.is_alive(), "the client's stream hangs after its connector was killed"
    say("victim stream ended %.3f s after the kill, %d events, error=%r, last=%r"
        % (st.ended - t_kill, len(st.events), st.error, st.events[-1:]))
    # nothing garbled: every event is a complete, well-formed SSE event, the
    # content is an exact prefix of what the model sent, and no [DONE]
    data = st.data()
    assert data and data[0] != "[DONE]", data
    assert "[DONE]" not in data, "a cut stream must not look complete"
    content = []
    for d in data:
        if "error" in d:
            assert d is data[-1], "error event not last: %r" % data[-3:]
            assert d["error"]["type"] == "api_error" and d["error"]["code"], d
            continue
        for ch in d["choices"]:
            if ch["delta"].get("content"):
                content.append(ch["delta"]["content"].strip())
    assert 3 <= len(content) < len(words) and content == words[:len(content)], content[-5:]
    for ev in st.events:
        assert ev.endswith(b"\n\n") and ev.startswith(b"data: "), ev
    assert st.ended - t_kill < 2.0
    l = request_log(env.gw, "b1-victim")
    assert l["status"] == 200 and l.get("error"), l
    # new requests go to the surviving connector
    n_before = len(survivor_fake.chats())
    t_poll = time.monotonic()
    dt, seen = poll_until_ok(env.gw, env.ctx, 5)
    say("first 200 after the kill: %.3f s (non-200 before it: %r)" % (t_poll + dt - t_kill, seen))
    for _ in range(5):
        assert_chat_ok(chat(env.gw, env.ctx), "ok")
    assert_stream_ok(chat(env.gw, env.ctx, stream=True, content="x"), "ok")
    assert len(survivor_fake.chats()) == n_before + 7, len(survivor_fake.chats())
    wait_connectors(env.gw, 1, 3)


# B1b (extra): a non-streaming request in flight when its connector dies
def test_kill9_connector_nonstream_in_flight(procs, tmp_path):
    env = Loop(procs, tmp_path)
    f1, f2 = procs.fake("f1"), procs.fake("f2")
    for f in (f1, f2):
        f.handler = lambda req: Behavior(first_byte_delay=1.5, content="late") if \
            req.json()["messages"][-1]["content"] == "wait" else None
        f.default = Behavior(content="ok")
    c1, c2 = env.connector("conn-1", f1), env.connector("conn-2", f2)
    wait_connectors(env.gw, 2)
    out = {}

    def run():
        t = time.monotonic()
        try:
            out["r"] = chat(env.gw, env.ctx, content="wait", rid="b1b", timeout=10)
        except (OSError, httpc.ConnectionClosed) as e:
            out["r"] = e
        out["t"] = time.monotonic() - t

    th = threading.Thread(target=run, daemon=True)
    th.start()
    assert f1.wait_for(lambda: len(f1.chats()) + len(f2.chats()) == 1, 3)
    serving = which_fake([f1, f2], "wait")
    victim, other = (c1, f2) if serving is f1 else (c2, f1)
    time.sleep(0.2)
    victim.kill()
    th.join(8)
    assert not th.is_alive(), "the request hangs after its connector was killed"
    r = out["r"]
    retried = len(other.chats())
    say("non-stream request whose connector was killed: %r after %.3f s; re-sent to the other connector: %d"
        % (r, out["t"], retried))
    assert isinstance(r, httpc.Response), r
    if r.status == 200:
        assert_chat_ok(r, "late")
        assert retried == 1
    else:
        assert_openai_error(r, 502, "api_error", "upstream_error")
        assert retried == 0
    assert out["t"] < 3.0
    assert request_log(env.gw, "b1b")["status"] == r.status
    assert_chat_ok(chat(env.gw, env.ctx), "ok")


# B2
def test_gateway_restart_connector_reconnects(procs, tmp_path):
    env = Loop(procs, tmp_path)
    fake = procs.fake("f1")
    fake.default = Behavior(content="ok")
    # the documented default backoff (250 ms base, 30 s max)
    c = env.connector("conn-1", fake, extra={"reconnect_base_ms": 250, "reconnect_max_ms": 30000})
    wait_connectors(env.gw, 1)
    assert_chat_ok(chat(env.gw, env.ctx), "ok")
    assert c.wait_log(lambda l: l.get("msg") == "gateway connected", 2)
    n_conn = c.count("gateway connected")
    assert env.gw.stop() == 0, env.gw.tail(20)
    t_stop = time.monotonic()
    assert c.wait_log(lambda l: l.get("msg") == "gateway disconnected", 3), c.tail(10)
    time.sleep(0.5)  # down for a while: the connector's redials fail meanwhile
    assert c.proc.poll() is None, "the connector exited when its gateway went away:\n" + c.tail(20)
    t_start = time.monotonic()
    gw2 = procs.gateway(env.cfg, name="gw", tls_ctx=env.pki.ctx())  # same config, same ports
    t_healthy = time.monotonic()
    dt, seen = poll_until_ok(gw2, env.ctx, 15)
    t_ok = time.monotonic()
    wait_connectors(gw2, 1, 3)
    say("gateway restart: down %.3f s; healthy %.3f s after start; first 200 %.3f s after start "
        "(%.3f s after healthy); non-200 meanwhile: %r"
        % (t_start - t_stop, t_healthy - t_start, t_ok - t_start, t_ok - t_healthy, seen[:3] + ["..."] * (len(seen) > 3)))
    say("connector log:", [(l["msg"], l.get("delay_ms"), l.get("reconnects"), l.get("reason"))
                           for l in c.logs() if l.get("msg", "").startswith("gateway ")][-8:])
    assert c.count("gateway connected") == n_conn + 1
    assert c.count("gateway reconnect scheduled") >= 1
    assert t_ok - t_healthy < 3.0, "recovery took %.3f s after the gateway was back" % (t_ok - t_healthy)
    for _ in range(3):
        assert_stream_ok(chat(gw2, env.ctx, stream=True), "ok")


# B3
def test_500_concurrent_streams_one_tunnel(procs, tmp_path):
    N, WORDS, INTERVAL = 500, 40, 0.025
    env = Loop(procs, tmp_path, limits={"max_connections": 5000})
    fake = procs.fake("f1")

    def expected(i):
        return ["r%dw%d" % (i, k) for k in range(WORDS)]

    def handler(req):
        c = req.json()["messages"][-1]["content"]
        if c.startswith("many:"):
            return Behavior(content=" ".join(expected(int(c[5:]))), chunk_interval=INTERVAL)
        return None

    fake.handler = handler
    env.connector("conn-1", fake)
    wait_connectors(env.gw, 1)
    results = [None] * N
    go = threading.Barrier(N + 1)

    def one(i):
        try:
            c = httpc.Conn(env.gw.port, tls=env.ctx, timeout=60)
        except Exception as e:  # noqa: BLE001
            go.wait()
            results[i] = "connect: %r" % e
            return
        try:
            go.wait()
            c.send_request("POST", "/v1/chat/completions", json.dumps(body(True, "many:%d" % i)).encode(),
                           {"Connection": "close", "Content-Type": "application/json"})
            r = c.read_head()
            if r.status != 200:
                results[i] = "status %d %r" % (r.status, c.read_body(r, "POST").body[:200])
                return
            events = list(c.iter_sse(r))
            text, done, finish = stream_text(events)
            want = "".join(w if k == 0 else " " + w for k, w in enumerate(expected(i)))
            if text != want or not done or finish != "stop":
                results[i] = "stream %d wrong: done=%s finish=%s got %r" % (i, done, finish, text[-60:])
                return
            results[i] = True
        except Exception as e:  # noqa: BLE001
            results[i] = "error: %r" % e
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(N)]
    for t in threads:
        t.start()
    go.wait(60)
    t0 = time.monotonic()
    peak = 0
    while any(t.is_alive() for t in threads) and time.monotonic() - t0 < 90:
        try:
            peak = max(peak, metric(env.gw, "umbra_tunnel_streams") or 0)
        except (OSError, httpc.ConnectionClosed):
            pass
        time.sleep(0.1)
    for t in threads:
        t.join(max(0.1, 90 - (time.monotonic() - t0)))
    wall = time.monotonic() - t0
    bad = [(i, r) for i, r in enumerate(results) if r is not True]
    # how many were open at the model server at once
    spans = sorted([(r.received_at, 1) for r in fake.chats()] + [(r.response_done_at or 1e18, -1) for r in fake.chats()])
    cur = top = 0
    for _, d in spans:
        cur += d
        top = max(top, cur)
    say("%d concurrent streams x %d chunks through one connector: wall %.2f s, ok %d, failed %d, "
        "peak umbra_tunnel_streams %d, peak concurrent at the model %d"
        % (N, WORDS, wall, N - len(bad), len(bad), peak, top))
    assert not bad, "%d of %d streams failed, e.g. %r" % (len(bad), N, bad[:5])
    assert len(fake.chats()) == N
    assert top >= N * 0.8, "only %d streams overlapped" % top
    assert metric(env.gw, "umbra_tunnel_streams") == 0
    assert metric(env.gw, "umbra_tunnel_streams_total") >= N


# B4
def test_client_disconnect_cancels_upstream(procs, tmp_path):
    env = Loop(procs, tmp_path)
    fake = procs.fake("f1")
    slow_handler(fake)
    fake.default = Behavior(content="ok")
    c = env.connector("conn-1", fake)
    wait_connectors(env.gw, 1)
    conn = httpc.Conn(env.gw.port, tls=env.ctx, timeout=10)
    conn.send_request("POST", "/v1/chat/completions", json.dumps(body(True, "slow")).encode(),
                      {"Content-Type": "application/json", "x-request-id": "b4-gone"})
    r = conn.read_head()
    assert r.status == 200, r
    it = conn.iter_sse(r)
    got = [next(it) for _ in range(4)]
    assert b'"content":" s2"' in got[-1][1], got
    assert fake.wait_for(lambda: len(fake.chats()) == 1, 2)
    req = fake.chats()[0]
    assert req.closed_at is None
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    t_close = time.monotonic()
    assert fake.wait_for(lambda: req.closed_at is not None, 5), \
        "the model server's request was not cancelled after the client left:\n" + c.tail(10)
    say("client disconnect -> upstream connection closed after %.3f s (%d of 401 events sent)"
        % (req.closed_at - t_close, len(req.sent_events)))
    assert req.closed_at - t_close < 2.0
    assert len(req.sent_events) < 100, len(req.sent_events)
    assert c.wait_log(lambda l: "upstream cancelled" in l.get("msg", ""), 3), c.tail(10)
    l = request_log(env.gw, "b4-gone")
    assert l["status"] == 200 and l["stream"], l
    assert_chat_ok(chat(env.gw, env.ctx), "ok")  # the tunnel is fine
    assert metric(env.gw, "umbra_tunnel_streams") == 0


# B5
def test_load_balancing_two_connectors(procs, tmp_path):
    env = Loop(procs, tmp_path)
    f1, f2 = procs.fake("f1"), procs.fake("f2")
    f1.default, f2.default = Behavior(content="ok"), Behavior(content="ok")
    env.connector("conn-1", f1)
    env.connector("conn-2", f2)
    wait_connectors(env.gw, 2)
    assert metric(env.gw, "umbra_tunnel_service_hosts", 'service="dark"') == 2
    for i in range(20):
        assert_chat_ok(chat(env.gw, env.ctx), "ok")
    a, b = len(f1.chats()), len(f2.chats())
    say("20 requests over two connectors: conn-1 %d, conn-2 %d" % (a, b))
    assert a + b == 20
    assert a >= 3 and b >= 3, (a, b)


# B6
def test_bind_policy(procs, tmp_path):
    env = Loop(procs, tmp_path, hosts=("conn-1",))
    env.pki.issue("rogue", kind="connector")
    fake = procs.fake("f1")
    fake.default = Behavior(content="ok")
    # (a) a connector identity that is not in the service's hosts
    rogue = env.connector("rogue", fake)
    assert rogue.wait_log(lambda l: l.get("msg") == "gateway connected", 5), rogue.tail(10)
    l = env.gw.wait_log(lambda l: l.get("msg", "").startswith("tunnel: connector rogue may not host service dark"), 3)
    assert l is not None and l["level"] == "warn", env.gw.tail(10)
    assert env.gw.wait_log(lambda l: l.get("msg") == "tunnel: connector admitted" and l.get("connector") == "rogue"
                           and l.get("services") == "", 3), env.gw.tail(10)
    assert metric(env.gw, "umbra_tunnel_service_hosts", 'service="dark"') == 0
    for stream in (False, True):
        r = chat(env.gw, env.ctx, stream=stream)
        r = r[0] if stream else r
        assert_openai_error(r, 503, "api_error", "no_healthy_endpoint")
    assert fake.chats() == []
    # (b) a client certificate at the tunnel: refused by the gateway. The
    # connector itself refuses to start with one, so a raw TLS client tries.
    p = subprocess.run([UMBRA_BIN, "connect", "-c", write_connector_cfg(tmp_path, env, "alice", fake)],
                       capture_output=True, text=True, timeout=10)
    say("umbra connect with a client certificate: exit %d: %s" % (p.returncode, p.stderr.strip()[-200:]))
    assert p.returncode == 1 and "connector" in p.stderr, (p.returncode, p.stderr)

    def raw_tunnel(name):
        ctx = ssl.create_default_context(cafile=env.pki.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.set_alpn_protocols(["h2"])
        ctx.load_cert_chain(env.pki.path(name, "crt"), env.pki.path(name, "key"))
        s = socket.create_connection(("127.0.0.1", env.tport), timeout=3)
        got = b""
        try:
            s = ctx.wrap_socket(s, server_hostname="localhost")
            s.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # our (the HTTP/2 server's) SETTINGS
            end = time.monotonic() + 3
            while time.monotonic() < end and len(got) < 24:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except (ssl.SSLError, OSError) as e:
            return got, e
        finally:
            s.close()
        return got, None

    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    got, err = raw_tunnel("conn-1")  # control: an admitted connector gets the gateway's HTTP/2 preface
    assert got.startswith(preface), (got, err)
    got, err = raw_tunnel("alice")
    say("client certificate at the tunnel: got %r, error %r" % (got[:30], err))
    assert not got.startswith(preface[:4]), got
    assert env.gw.wait_log(lambda l: "presented a certificate that is not a connector's" in l.get("msg", ""), 3), \
        env.gw.tail(10)
    # the legitimate host is admitted alongside
    env.connector("conn-1", fake)
    wait_connectors(env.gw, 2)
    assert metric(env.gw, "umbra_tunnel_service_hosts", 'service="dark"') == 1
    assert_chat_ok(chat(env.gw, env.ctx), "ok")


# B8 (extra): docs/tunnel.md point 6, a slow client stalls the model server
def test_slow_client_backpressure(procs, tmp_path):
    env = Loop(procs, tmp_path)
    fake = procs.fake("f1")
    piece = "x" * 8000
    n_chunks = 5000  # ~40 MB of SSE
    fake.handler = lambda req: Behavior(chunks=[piece] * n_chunks) if req.json().get("stream") else None
    env.connector("conn-1", fake)
    wait_connectors(env.gw, 1)
    conn = httpc.Conn(env.gw.port, tls=env.ctx, timeout=20)
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    conn.send_request("POST", "/v1/chat/completions", json.dumps(body(True, "big")).encode(),
                      {"Content-Type": "application/json", "Connection": "close"})
    r = conn.read_head()
    assert r.status == 200, r
    assert fake.wait_for(lambda: len(fake.chats()) == 1, 3)
    req = fake.chats()[0]
    time.sleep(2.0)  # the client reads nothing
    a = len(req.sent_events)
    time.sleep(1.0)
    b = len(req.sent_events)
    say("slow client: the model server had sent %d then %d of %d chunks (%.1f MB) while the client read nothing"
        % (a, b, n_chunks + 3, b * 8.2 / 1000))
    assert b < n_chunks / 2, "the stream was buffered instead of stalling the model server (%d chunks sent)" % b
    assert b - a < 50, "the model server kept sending while the client read nothing (%d -> %d)" % (a, b)
    # now read everything: complete and in order
    n = 0
    done = False
    for _, ev in conn.iter_sse(r):
        if ev.startswith(b"data: [DONE]"):
            done = True
            continue
        d = json.loads(ev[6:])
        c = d["choices"][0]["delta"].get("content") if d.get("choices") else None
        if c:
            assert c == piece
            n += 1
    conn.close()
    assert n == n_chunks and done, (n, done)


def write_connector_cfg(tmp_path, env, identity, fake):
    path = os.path.join(str(tmp_path), "conn-%s.yaml" % identity)
    with open(path, "w") as f:
        f.write(to_yaml({"identity": {"cert": "pki/%s.crt" % identity, "key": "pki/%s.key" % identity,
                                      "ca": "pki/ca.crt"},
                         "gateways": ["127.0.0.1:%d" % env.tport],
                         "services": [{"name": SERVICE, "upstream": fake.url}]}) + "\n")
    return path


# B7
def test_connector_sigterm_drains_stream(procs, tmp_path):
    env = Loop(procs, tmp_path)
    fake = procs.fake("f1")
    words = slow_handler(fake, words=40, interval=0.05)
    fake.default = Behavior(content="ok")
    c = env.connector("conn-1", fake)
    wait_connectors(env.gw, 1)
    st = StreamReader(env.gw, env.ctx, rid="b7-drain")
    st.start()
    assert st.first_event.wait(5) and st.status == 200, (st.status, st.error)
    time.sleep(0.3)
    c.signal(signal.SIGTERM)
    t_term = time.monotonic()
    # while draining, new requests are not sent to it (GOAWAY): 503, promptly
    time.sleep(0.2)
    t0 = time.monotonic()
    r = chat(env.gw, env.ctx, timeout=5)
    say("request during the drain: %d in %.3f s" % (r.status, time.monotonic() - t0))
    assert_openai_error(r, 503, "api_error", "no_healthy_endpoint")
    rc = c.proc.wait(10)
    t_exit = time.monotonic()
    st.join(5)
    assert not st.is_alive()
    say("SIGTERM during a stream: stream ended %.3f s later (%d events, error %r), connector exited %d after %.3f s"
        % (st.ended - t_term, len(st.events), st.error, rc, t_exit - t_term))
    assert st.error is None, st.error
    text, done, finish = stream_text([(0, e) for e in st.events])
    assert text == words and done and finish == "stop", (text[-40:], done, finish)
    assert rc == 0, c.tail(20)
    assert t_exit >= st.ended - 0.2, "the connector exited before its stream finished"
    assert c.wait_log(lambda l: l.get("msg") == "connector draining", 1)
    assert c.wait_log(lambda l: l.get("msg") == "connector stopped", 1)
    l = request_log(env.gw, "b7-drain")
    assert l["status"] == 200 and not l.get("error"), l


# ================================================== A. network namespaces ==

@pytest.fixture
def topo():
    try:
        netns_util.check_available()
    except netns_util.NetnsUnavailable as e:
        pytest.skip("network namespaces unavailable: %s" % e)
    t = netns_util.Topology().create()
    try:
        yield t
    finally:
        errs = t.destroy()
        assert not errs, errs


def ns_conn(ns, host, port, ctx, timeout=10.0):
    with netns_util.in_netns(ns):
        return httpc.Conn(port, host=host, tls=ctx, timeout=timeout)


def ns_chat(ns, host, port, ctx, stream=False, content="hi", rid=None, timeout=10.0):
    """A chat request from namespace ns: a Response, or for streams
    (response, [(t, event)], t_sent) like httpc.stream."""
    h = {"Connection": "close", "Content-Type": "application/json"}
    if rid:
        h["x-request-id"] = rid
    with ns_conn(ns, host, port, ctx, timeout) as c:
        t0 = time.monotonic()
        c.send_request("POST", "/v1/chat/completions", json.dumps(body(stream, content)).encode(), h)
        r = c.read_head()
        if not stream or r.status != 200:
            return c.read_body(r, "POST") if not stream else (c.read_body(r, "POST"), [], t0)
        return r, list(c.iter_sse(r)), t0


SLOW = " ".join("s%d" % i for i in range(400))  # 0.05 s apart: 20 s of stream


class NsEnv:
    """The namespace deployment: fake model server and connector(s) in
    modelhost, the gateway in gateway, clients in client."""

    def __init__(self, T, procs, tmp_path):
        self.T, self.procs = T, procs
        ns_m = T.ns["modelhost"]
        # identities: the gateway certificate names both of its addresses
        self.pki = pki = make_pki(tmp_path, gw_ips=("127.0.0.1", T.gw_client_ip, T.gw_model_ip))
        self.port, self.tport = free_port(), free_port()
        self.cfg = gateway_config(pki, self.port, self.tport, hosts=["gpu-1", "gpu-2"], users=["compliance", "bob"],
                                  listen_host=T.gw_client_ip, tunnel_host=T.gw_model_ip)
        pki.issue("gpu-1", kind="connector")
        pki.issue("alice", kind="client", team="compliance")   # allowed by team
        pki.issue("bob", kind="client", team="other")          # allowed by identity name
        pki.issue("mallory", kind="client", team="eng")        # not in users
        # modelhost: the model server on loopback only (an in-process fake
        # whose sockets are created inside the modelhost namespace)
        with netns_util.in_netns(ns_m):
            self.fake = procs.fake("model", host="127.0.0.1")

        def handler(req):
            b = req.json() if req.body else {}
            msgs = b.get("messages") or [{}]
            if b.get("stream") and str(msgs[-1].get("content", "")).startswith("slow"):
                return Behavior(chunk_interval=0.05, content=SLOW)
            return None

        self.fake.handler = handler
        self.fake.default = Behavior(content="dark model answers")
        # gateway namespace: API on the client side, tunnel on the modelhost side
        self.gw = procs.gateway(self.cfg, cls=NsGateway, ns=T.ns["gateway"], host=T.gw_client_ip,
                                tls_ctx=pki.ctx())

    def connector(self, identity, extra=None):
        """`umbra connect` in modelhost, dialling the gateway's modelhost-facing address."""
        T = self.T
        c = self.procs.connector(identity, identity, ["%s:%d" % (T.gw_model_ip, self.tport)],
                                 [(SERVICE, self.fake.url)], self.pki.pki_rel, prefix=T.exec_prefix("modelhost"),
                                 extra=extra)
        for _ in range(100):  # `ip netns exec` execs the connector in place (same pid)
            exe = os.readlink("/proc/%d/exe" % c.pid)
            if exe.endswith("umbra"):
                break
            time.sleep(0.02)
        assert exe.endswith("umbra"), "pid %d is %s, not the connector itself" % (c.pid, exe)
        return c

    def chat(self, ctx, **kw):
        return ns_chat(self.T.ns["client"], self.T.gw_client_ip, self.port, ctx, **kw)

    def metric_connectors(self):
        with ns_conn(self.T.ns["gateway"], self.T.gw_client_ip, self.port, self.pki.ctx(), 3) as c:
            r = c.request("GET", "/metrics", headers={"Connection": "close"})
        assert r.status == 200, r
        v = 0.0
        for ln in r.body.decode().splitlines():
            if ln.startswith("umbra_tunnel_connectors ") or ln.startswith("umbra_tunnel_connectors{"):
                v += float(ln.rsplit(" ", 1)[1])
        return v

    def wait_metric(self, n, timeout=10):
        end = time.monotonic() + timeout
        v = None
        while time.monotonic() < end:
            v = self.metric_connectors()
            if v == n:
                return
            time.sleep(0.03)
        raise AssertionError("umbra_tunnel_connectors %r != %d:\n%s" % (v, n, self.gw.tail(20)))


def test_netns_dark_service(topo, procs, tmp_path):
    T = topo
    ns_c, ns_g, ns_m = T.ns["client"], T.ns["gateway"], T.ns["modelhost"]
    say("namespaces:", T.ns, "client %s | gateway %s / %s | modelhost %s"
        % (T.client_ip, T.gw_client_ip, T.gw_model_ip, T.model_ip))
    env = NsEnv(T, procs, tmp_path)
    pki, port, tport, fake, gw = env.pki, env.port, env.tport, env.fake, env.gw
    metric_connectors, wait_metric = env.metric_connectors, env.wait_metric
    conn1 = env.connector("gpu-1")
    wait_metric(1)
    assert gw.wait_log(lambda l: l.get("msg") == "tunnel: connector admitted" and l.get("connector") == "gpu-1"
                       and l.get("services") == SERVICE, 3), gw.tail(20)

    alice, bob, mallory = pki.ctx("alice"), pki.ctx("bob"), pki.ctx("mallory")

    # ---- 3. the client reaches the dark model through the gateway
    r = ns_chat(ns_c, T.gw_client_ip, port, alice, rid="ns-plain")
    assert_chat_ok(r, "dark model answers")
    l = request_log(gw, "ns-plain")
    assert (l["status"], l["endpoint"], l["identity"], l["team"], l["auth"]) == (200, "dark-1", "alice",
                                                                                "compliance", "cert"), l
    assert l["peer"].startswith(T.client_ip + ":"), l
    assert_stream_ok(ns_chat(ns_c, T.gw_client_ip, port, alice, stream=True, rid="ns-stream"), "dark model answers")
    assert request_log(gw, "ns-stream")["status"] == 200
    assert_chat_ok(ns_chat(ns_c, T.gw_client_ip, port, bob), "dark model answers")  # by identity name
    seen = [r for r in fake.chats()]
    assert len(seen) == 3, seen
    for req in seen:  # the model server saw the request, never the caller's credentials
        assert req.header("authorization") is None and req.header("x-api-key") is None, req.headers
    assert seen[0].header("x-request-id") == "ns-plain", seen[0].headers
    # and with curl from the client namespace (the certificate's IP SAN is checked)
    p = T.sh(ns_c, "curl", "-sS", "--max-time", "10", "--cacert", pki.ca, "--cert", pki.path("alice", "crt"),
             "--key", pki.path("alice", "key"), "-H", "Content-Type: application/json",
             "--data-binary", json.dumps(body()), "-w", "\n%{http_code}",
             "https://%s:%d/v1/chat/completions" % (T.gw_client_ip, port), check=False)
    assert p.returncode == 0, p.stderr
    text, code = p.stdout.rsplit("\n", 1)
    assert code == "200", p.stdout
    assert json.loads(text)["choices"][0]["message"]["content"] == "dark model answers"

    # ---- 5. an identity outside `users`: 403 service_not_allowed, nothing reaches the model
    n_before = len(fake.chats())
    r = ns_chat(ns_c, T.gw_client_ip, port, mallory, rid="ns-mallory")
    assert_openai_error(r, 403, "permission_error", "service_not_allowed")
    r = ns_chat(ns_c, T.gw_client_ip, port, mallory, stream=True)[0]
    assert_openai_error(r, 403, "permission_error", "service_not_allowed")
    assert request_log(gw, "ns-mallory")["status"] == 403
    assert len(fake.chats()) == n_before, fake.chats()

    # ---- 1. modelhost listens on nothing but loopback; the connector on nothing at all
    socks = netns_util.listening_sockets(ns_m)
    say("modelhost listening sockets (ss -H -ltnup):", [(p, h, po) for p, h, po, _ in socks])
    assert ("tcp", "127.0.0.1", str(fake.port)) in [(p, h, po) for p, h, po, _ in socks], socks  # ss parse works
    bad = [s for s in socks if not netns_util.is_loopback(s[1])]
    assert not bad, "modelhost listens on non-loopback addresses: %r" % bad
    mine = netns_util.process_sockets(ns_m, conn1.pid)
    say("connector pid %d sockets (ss -tuanp):" % conn1.pid, mine)
    assert netns_util.listening_sockets(ns_m, pid=conn1.pid) == [], mine
    assert not [ln for ln in mine if ln.split()[1] in ("LISTEN", "UNCONN")], mine
    assert [ln for ln in mine if ln.split()[1] == "ESTAB" and "%s:%d" % (T.gw_model_ip, tport) in ln], \
        "the connector holds no connection to the gateway: %r" % mine

    # ---- 2. every TCP port of modelhost is refused from gateway and client
    full = [[1, 65535]]
    scans = [("gateway", ns_g, T.model_ip, 4), ("client", ns_c, T.model_ip, 4)]
    ll = T.link_local6("modelhost", T.links["m"])
    if ll:
        scans.append(("gateway", ns_g, "%s%%%s" % (ll, T.links["gm"]), 6))
    for who, ns, host, fam in scans:
        res = netns_util.scan_tcp(ns, host, full, family=fam)
        say("scan from %s of %s tcp/1-65535: %d ports in %.2fs, open=%r refused=%d unreach=%d timeout=%d other=%r"
            % (who, host, res["n"], res["seconds"], res["open"], res["refused"], res["unreach"],
               len(res["timeout"]), res["other"]))
        assert res["open"] == [], "modelhost %s accepts TCP from %s on %r" % (host, who, res["open"])
        # every port answered "refused": the host was reachable, the ports closed
        assert res["refused"] == 65535, res
    # the scanner does see an open port (control): the gateway's API from the client
    res = netns_util.scan_tcp(ns_c, T.gw_client_ip, [[port, port], [1, 1024]])
    assert res["open"] == [port], res

    # ---- 4. revocation: the service goes dark within a second
    slow_res = {}

    def slow_stream():
        try:
            with ns_conn(ns_c, T.gw_client_ip, port, alice, 30) as c:
                c.send_request("POST", "/v1/chat/completions", json.dumps(body(True, "slow")).encode(),
                               {"Connection": "close", "Content-Type": "application/json"})
                r = c.read_head()
                slow_res["status"] = r.status
                evs = []
                for t, ev in c.iter_sse(r):
                    evs.append(ev)
                    slow_res["events"] = len(evs)
                slow_res["events"] = len(evs)
                slow_res["last"] = evs[-2:] if evs else []
        except (OSError, httpc.ConnectionClosed) as e:
            slow_res["error"] = repr(e)
        slow_res["end"] = time.monotonic()

    th = threading.Thread(target=slow_stream, daemon=True)
    th.start()
    assert fake.wait_for(lambda: any(r.received_at and json.loads(r.body).get("stream") and
                                     r.json()["messages"][-1]["content"] == "slow" for r in fake.chats()), 5)
    time.sleep(0.3)
    pki.revoke("gpu-1")
    t_rev = time.monotonic()
    first_503 = None
    last = None
    transitional = []  # a request that was on the tunnel when it was cut: 502 upstream_error
    while time.monotonic() - t_rev < 3.0:
        last = ns_chat(ns_c, T.gw_client_ip, port, alice, timeout=5)
        if last.status == 503:
            first_503 = time.monotonic() - t_rev
            break
        if last.status == 502:
            assert_openai_error(last, 502, "api_error", "upstream_error")
            transitional.append(round(time.monotonic() - t_rev, 3))
        else:
            assert_chat_ok(last, "dark model answers")
        time.sleep(0.01)
    if transitional:
        say("requests racing the revocation got 502 upstream_error at %r s" % transitional)
    assert len(transitional) <= 2, transitional
    assert first_503 is not None, "still %r 3 s after revoking the connector" % last
    assert_openai_error(last, 503, "api_error", "no_healthy_endpoint")
    say("revocation -> first 503 no_healthy_endpoint after %.3f s" % first_503)
    th.join(5)
    assert not th.is_alive(), "the in-flight stream did not end after the connector was revoked"
    say("in-flight stream at revocation: %r, ended %.3f s after the revoke"
        % ({k: v for k, v in slow_res.items() if k != "end"}, slow_res["end"] - t_rev))
    assert slow_res.get("status") == 200 and slow_res.get("events", 0) < 400, slow_res
    assert slow_res["end"] - t_rev < 2.0, slow_res
    assert first_503 < 1.0, "revocation took %.3f s" % first_503
    for _ in range(3):  # and it stays dark (the connector's redials are refused)
        assert_openai_error(ns_chat(ns_c, T.gw_client_ip, port, alice), 503, "api_error", "no_healthy_endpoint")
        time.sleep(0.1)
    assert gw.wait_log(lambda l: l.get("msg", "").startswith("tunnel: connector gpu-1 (")
                       and l["msg"].endswith("disconnected: identity revoked"), 3), gw.tail(20)
    # its redials are refused while the store says revoked
    assert gw.wait_log(lambda l: l.get("msg", "").startswith("tunnel: refused connector gpu-1 (")
                       and l["msg"].endswith("identity revoked"), 5), gw.tail(20)
    assert conn1.proc.poll() is None
    assert metric_connectors() == 0

    # ---- 4b. restore with a NEW identity (revocation is final)
    assert conn1.stop() == 0, conn1.tail(20)
    pki.issue("gpu-2", kind="connector")
    t_start = time.monotonic()
    env.connector("gpu-2")
    first_200 = None
    while time.monotonic() - t_start < 10.0:
        last = ns_chat(ns_c, T.gw_client_ip, port, alice, timeout=5)
        if last.status == 200:
            first_200 = time.monotonic() - t_start
            break
        assert_openai_error(last, 503, "api_error", "no_healthy_endpoint")
        time.sleep(0.02)
    assert first_200 is not None, "no recovery within 10 s of starting connector gpu-2: %r\n%s" % (last, gw.tail(20))
    say("new connector gpu-2 started -> first 200 after %.3f s" % first_200)
    assert_chat_ok(last, "dark model answers")
    for _ in range(3):
        assert_stream_ok(ns_chat(ns_c, T.gw_client_ip, port, alice, stream=True), "dark model answers")
    assert gw.wait_log(lambda l: l.get("msg") == "tunnel: connector admitted" and l.get("connector") == "gpu-2", 3)



def test_netns_partition_keepalive(topo, procs, tmp_path):
    """A silent partition (modelhost's link down: no FIN, no RST): the gateway's
    keepalive (tunnel ping_interval_ms 1000, ping_timeout_ms 2000) must drop
    the dead tunnel within interval + timeout (3 s, +0.5 s slack), then the
    service answers 503; link back up: the connector (same ping settings)
    redials on its own."""
    T = topo
    ns_c, ns_m = T.ns["client"], T.ns["modelhost"]
    env = NsEnv(T, procs, tmp_path)
    port, gw, metric_connectors = env.port, env.gw, env.metric_connectors
    alice = env.pki.ctx("alice")
    conn2 = env.connector("gpu-1", extra={"ping_interval_ms": 1000, "ping_timeout_ms": 2000})
    env.wait_metric(1)
    assert_chat_ok(env.chat(alice), "dark model answers")
    time.sleep(0.3)
    # ---- a silent partition (modelhost's link down: no FIN, no RST): the
    # gateway's keepalive (ping 1 s, timeout 2 s) drops the dead tunnel, the
    # service answers 503; link back up: the connector redials on its own.
    T.sh(ns_m, "ip", "link", "set", T.links["m"], "down")
    t_cut = time.monotonic()
    seen = []
    first_503 = None
    while time.monotonic() - t_cut < 8.0:
        t_req = time.monotonic()
        try:
            r = ns_chat(ns_c, T.gw_client_ip, port, alice, timeout=8)
        except (OSError, httpc.ConnectionClosed) as e:
            seen.append((round(t_req - t_cut, 2), repr(e)))
            continue
        seen.append((round(t_req - t_cut, 2), r.status, round(time.monotonic() - t_req, 2)))
        if r.status == 503:
            assert_openai_error(r, 503, "api_error", "no_healthy_endpoint")
            first_503 = time.monotonic() - t_cut
            break
        time.sleep(0.05)
    say("partition: requests (start s, status, took s): %r" % seen)
    assert first_503 is not None, "the gateway still routes to a connector it cannot reach 8 s after a partition"
    say("partition -> first 503 no_healthy_endpoint after %.3f s" % first_503)
    l = gw.wait_log(lambda l: "disconnected: no PING acknowledgement" in l.get("msg", ""), 1)
    assert l is not None, gw.tail(10)
    assert metric_connectors() == 0
    T.sh(ns_m, "ip", "link", "set", T.links["m"], "up")
    T.sh(ns_m, "ip", "route", "replace", "default", "via", T.gw_model_ip)
    t_up = time.monotonic()
    first_200 = None
    while time.monotonic() - t_up < 10.0:
        r = ns_chat(ns_c, T.gw_client_ip, port, alice, timeout=5)
        if r.status == 200:
            first_200 = time.monotonic() - t_up
            break
        assert_openai_error(r, 503, "api_error", "no_healthy_endpoint")
        time.sleep(0.05)
    say("connector log around the partition:", [(l["msg"], l.get("reason"), l.get("delay_ms"))
                                                for l in conn2.logs() if l.get("msg", "").startswith("gateway ")][-6:])
    assert first_200 is not None, "no recovery 10 s after the partition healed:\n" + conn2.tail(10)
    say("partition healed -> first 200 after %.3f s" % first_200)
    assert_chat_ok(r, "dark model answers")
    assert conn2.proc.poll() is None
    # checked last, so that the recovery above is verified either way
    assert first_503 < 3.5, ("the gateway took %.3f s to drop a tunnel with no PING ACK "
                             "(ping_interval_ms 1000 + ping_timeout_ms 2000 = 3 s)" % first_503)


# Routing's remote layers reach a dark service like any request does.
def test_routing_embedder_and_classifier_through_the_tunnel(procs, tmp_path):
    routing = {
        "default_route": "general",
        "semantic": {"provider": "onprem", "model": "e5", "threshold": 0.9, "ambiguous_threshold": 0.3,
                     "timeout_ms": 3000},
        "classifier": {"model": MODEL, "timeout_ms": 3000},
        "routes": [{"name": "coding", "model": MODEL, "examples": ["python code bug"]},
                   {"name": "planning", "model": MODEL, "examples": ["plan the party"]},
                   {"name": "general", "model": MODEL, "description": "anything else"}],
    }
    env = Loop(procs, tmp_path, routing=routing)
    fake = procs.fake("dark")

    def handler(req):
        payload = json.loads(req.body or b"{}")
        if req.path == "/v1/embeddings":
            vecs = []
            for t in payload["input"]:
                low = t.lower()
                # coding, planning, "mixed" axes: a prompt with both topics is ambiguous
                vecs.append([float("python" in low or "bug" in low), float("plan" in low or "party" in low), 0.2])
            data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vecs)]
            return Behavior(body=json.dumps({"object": "list", "data": data}).encode())
        system = payload["messages"][0]["content"] if payload.get("messages") else ""
        if "route" in system and "confidence" in system:
            return Behavior(content='{"route": "planning", "confidence": 0.8}')
        return None
    fake.handler = handler
    env.connector("conn-1", fake)
    wait_connectors(env.gw, 1)

    def routed(content):
        b = {"messages": [{"role": "user", "content": content}]}
        return httpc.request(env.gw.port, "POST", "/v1/chat/completions", json_body=b,
                             headers={"Connection": "close"}, tls=env.ctx, timeout=10)
    r = routed("fix this python bug")
    assert r.status == 200, r
    assert (r.header("x-umbra-route"), r.header("x-umbra-route-method")) == ("coding", "semantic")
    first = json.loads(fake.posts("/v1/embeddings")[0].body)
    assert first["model"] == "e5" and len(first["input"]) == 4  # 2 examples, 1 description, the prompt
    r = routed("a python bug at the party plan")
    assert r.status == 200, r
    assert (r.header("x-umbra-route"), r.header("x-umbra-route-method")) == ("planning", "classifier")
    assert len(fake.posts("/v1/embeddings")) == 2
    # classifier call + two client requests reached the model host through the tunnel
    assert len(fake.chats()) == 3
