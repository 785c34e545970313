"""Process lifecycle: SIGTERM drain, SIGHUP reload, `umbra check`, ${ENV} and
relative paths in the config."""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import httpc
from conftest import (UMBRA_BIN, Behavior, base_config, chat_body, free_port, provider, run_check,
                      to_yaml)


class StreamInBackground(threading.Thread):
    """Runs one streaming request; .first is set at the first event."""

    def __init__(self, gw, body, headers=None):
        super().__init__(daemon=True)
        self.gw, self.body, self.headers = gw, body, headers
        self.first = threading.Event()
        self.events = []
        self.status = None
        self.error = None

    def run(self):
        try:
            with httpc.Conn(self.gw.port, timeout=20) as c:
                c.send_request("POST", "/v1/chat/completions", json.dumps(self.body).encode(),
                               dict({"Content-Type": "application/json"}, **(self.headers or {})))
                r = c.read_head()
                self.status = r.status
                for t, ev in c.iter_sse(r):
                    self.events.append((t, ev))
                    self.first.set()
        except Exception as e:  # noqa: BLE001
            self.error = e
        self.first.set()


SLOW = dict(content=" ".join("w%d" % i for i in range(15)), chunk_interval=0.1)
SLOW_TEXT = " ".join("w%d" % i for i in range(15))


def _text(events):
    data = httpc.sse_data(events)
    return "".join(d["choices"][0]["delta"].get("content", "") for d in data
                   if d != "[DONE]" and "choices" in d and d["choices"])


def test_sigterm_drains_inflight_and_refuses_new(make_gateway, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p"}]))
    idle = gw.conn()
    assert idle.request("GET", "/health").status == 200
    fake.script(Behavior(**SLOW), Behavior(first_byte_delay=1.0, content="late but complete"))
    st = StreamInBackground(gw, chat_body("m", stream=True))
    st.start()
    assert st.first.wait(5) and st.status == 200
    nonstream = []
    ns = threading.Thread(target=lambda: nonstream.append(gw.chat("m")))
    ns.start()
    assert fake.wait_for(lambda: len(fake.chats()) == 2, 3)
    t_term = time.monotonic()
    gw.signal(signal.SIGTERM)
    # new connections are refused soon after
    refused = False
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.close()
            time.sleep(0.05)
        except ConnectionRefusedError:
            refused = True
            break
    assert refused, "the listener still accepts connections after SIGTERM"
    assert gw.proc.poll() is None, "exited before the in-flight stream finished"
    # the idle keep-alive connection is closed, not kept until the drain ends
    assert idle.is_closed(wait=2.0)
    st.join(10)
    assert st.error is None, st.error
    assert httpc.sse_data(st.events)[-1] == "[DONE]"
    assert _text(st.events) == SLOW_TEXT
    ns.join(5)
    assert nonstream and nonstream[0].status == 200, nonstream
    assert nonstream[0].json()["choices"][0]["message"]["content"] == "late but complete"
    rc = gw.proc.wait(5)
    assert rc == 0
    assert time.monotonic() - t_term < 5
    gw.expect_exit = True


def test_sigterm_drain_timeout_bounds_exit(make_gateway, fake):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p"}],
                                  limits={"drain_timeout_ms": 1000}))
    fake.script(Behavior(content=" ".join("w%d" % i for i in range(200)), chunk_interval=0.1))
    st = StreamInBackground(gw, chat_body("m", stream=True))
    st.start()
    assert st.first.wait(5)
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    gw.proc.wait(6)
    took = time.monotonic() - t0
    assert 0.8 < took < 3.0, took
    st.join(5)
    assert "[DONE]" not in httpc.sse_data(st.events)
    gw.expect_exit = True


def test_sighup_reload_new_config_inflight_unaffected(make_gateway, fake):
    port = free_port()
    cfg = base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p", "upstream_model": "v1"}])
    gw = make_gateway(cfg)
    assert gw.chat("m").status == 200
    assert fake.chats()[-1].json()["model"] == "v1"
    fake.script(Behavior(**SLOW))
    st = StreamInBackground(gw, chat_body("m", stream=True))
    st.start()
    assert st.first.wait(5)
    cfg2 = base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p", "upstream_model": "v2"},
                                                     {"name": "added", "provider": "p"}])
    gw.reload(cfg2)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        if gw.chat("added").status == 200:
            break
        time.sleep(0.1)
    else:
        pytest.fail("reloaded config not in use after 5 s")
    assert gw.chat("m").status == 200
    assert fake.chats()[-1].json()["model"] == "v2"
    ids = sorted(m["id"] for m in gw.get("/v1/models").json()["data"])
    assert ids == ["added", "m"]
    st.join(10)
    assert st.error is None and st.status == 200
    assert httpc.sse_data(st.events)[-1] == "[DONE]", "in-flight stream broken by the reload"
    assert _text(st.events) == SLOW_TEXT
    assert fake.chats()[1].json()["model"] == "v1"

    # a broken config is logged and the old one kept
    nlines = len(gw.logs())
    gw.reload(text="listen: \"127.0.0.1:%d\"\nproviders: [\n  - { name: p, type: openai\nmodels: :::\n" % port)
    time.sleep(1.0)
    assert gw.proc.poll() is None
    assert gw.chat("m").status == 200 and fake.chats()[-1].json()["model"] == "v2"
    assert gw.chat("added").status == 200
    new = gw.logs()[nlines:]
    assert any(l.get("level") in ("error", "warn", "warning") for l in new), new
    # a config that parses but does not validate: same
    bad = base_config(port, [provider("p", fake)], [{"name": "m", "provider": "nope"}])
    gw.reload(bad)
    time.sleep(1.0)
    assert gw.proc.poll() is None
    assert gw.chat("m").status == 200 and fake.chats()[-1].json()["model"] == "v2"


def test_env_expansion_and_relative_ca_file(make_gateway, make_fake, certs, tmp_path):
    f = make_fake(tls=(certs["up_cert"], certs["up_key"]), name="tls")
    shutil.copy(certs["ca"], str(tmp_path / "rel-ca.crt"))
    port = free_port()
    cfg = base_config(port, [provider("p", f, api_key="${UMBRA_TEST_KEY}", ca_file="rel-ca.crt")],
                      [{"name": "m", "provider": "p"}])
    gw = make_gateway(cfg, env={"UMBRA_TEST_KEY": "sk-from-env-42"})
    r = gw.chat("m")
    assert r.status == 200, r
    assert f.chats()[0].header("authorization") == "Bearer sk-from-env-42"


# ------------------------------------------------------------ umbra check --

GOOD = """listen: "127.0.0.1:18080"
providers:
  - name: local
    type: openai
    endpoints:
      - { name: gpu-1, url: "http://127.0.0.1:8001", weight: 3 }
      - { name: gpu-2, url: "unix:///tmp/umbra-test.sock" }
  - name: cloud
    type: openai
    url: "https://api.example.invalid"
    api_key: "sk-x"
models:
  - name: llama
    provider: local
    upstream_model: meta-llama/Llama-3.3-70B-Instruct
    fallbacks: [gpt]
  - name: gpt
    provider: cloud
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_check_good_config(umbra_bin, tmp_path):
    path = _write(tmp_path, "good.yaml", GOOD)
    r = run_check(path)
    out = r.stdout.decode()
    assert r.returncode == 0, (r.stdout, r.stderr)
    for s in ("llama", "gpt", "local", "cloud", "gpu-1", "gpu-2", "http://127.0.0.1:8001",
              "unix:///tmp/umbra-test.sock", "https://api.example.invalid"):
        assert s in out, (s, out)
    assert "sk-x" not in out, "secrets must not be printed"
    # the table: the llama row names its provider and endpoints
    llama_lines = [l for l in out.splitlines() if "llama" in l]
    assert llama_lines and any("local" in l for l in llama_lines), out


BAD = [
    # (name, text, acceptable lines (the offending key's, or the item's that holds it), words in the message)
    ("unknown-key", GOOD.replace('    api_key: "sk-x"\n', '    api_kee: "sk-x"\n'), (11,), ["api_kee", "api_key"]),
    ("unknown-top-key", "listn: \"127.0.0.1:1\"\n" + GOOD.split("\n", 1)[1], (1,), ["listn"]),
    ("unknown-provider", GOOD.replace("    provider: cloud\n", "    provider: clowd\n"), (18, 17), ["clowd"]),
    ("bad-type", GOOD.replace("    type: openai\n    url:", "    type: openaj\n    url:"), (9,), ["openaj"]),
    ("bad-scheme", GOOD.replace("https://api.example.invalid", "ftp://api.example.invalid"), (10,), ["ftp"]),
    ("unknown-fallback", GOOD.replace("fallbacks: [gpt]", "fallbacks: [gtp]"), (16,), ["gtp"]),
    ("bad-weight", GOOD.replace("weight: 3", "weight: heavy"), (6,), ["weight"]),
    ("yaml-syntax", GOOD.replace('  - name: gpt\n', '  - name: "gpt\n'), (17, 18, 19), []),
    ("bad-listen", GOOD.replace('listen: "127.0.0.1:18080"', 'listen: "127.0.0.1:99999"'), (1,), ["listen"]),
    ("url-and-endpoints", GOOD.replace('    endpoints:\n', '    url: "http://127.0.0.1:1"\n    endpoints:\n'),
     (3, 5, 6, 7), []),
    ("duplicate-model", GOOD + "  - name: gpt\n    provider: local\n", (19,), ["gpt"]),
    ("models-not-list", GOOD.split("models:")[0] + "models: 5\n", (12,), ["models"]),
    ("unset-env-var", GOOD.replace('api_key: "sk-x"', 'api_key: "${UMBRA_TEST_SURELY_UNSET_VAR}"'), (11,),
     ["UMBRA_TEST_SURELY_UNSET_VAR"]),
    ("negative-timeout", GOOD.replace('    api_key: "sk-x"\n', '    api_key: "sk-x"\n    timeouts: { connect_ms: -5 }\n'),
     (12,), ["connect_ms"]),
]


@pytest.mark.parametrize("name,text,lines,words", BAD, ids=[b[0] for b in BAD])
def test_check_bad_config(umbra_bin, tmp_path, name, text, lines, words):
    path = _write(tmp_path, name + ".yaml", text)
    r = run_check(path)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0, out
    prefixes = ["%s:%d:" % (path, l) for l in lines]
    hits = [l for l in out.splitlines() if any(p in l for p in prefixes)]
    assert hits, "expected %s:%s: ... in:\n%s" % (path, "|".join(map(str, lines)), out)
    msg = " ".join(hits)
    for w in words:
        assert w in msg, (w, msg)


def test_serve_refuses_bad_config(umbra_bin, tmp_path):
    path = _write(tmp_path, "bad.yaml", GOOD.replace("    provider: cloud\n", "    provider: clowd\n"))
    r = subprocess.run([UMBRA_BIN, "serve", "-c", path], capture_output=True, timeout=10)
    assert r.returncode != 0
    out = (r.stdout + r.stderr).decode()
    assert ("%s:18:" % path) in out or ("%s:17:" % path) in out, out


def test_cli_usage_errors(umbra_bin):
    for args in ([], ["bogus"], ["serve", "-c"], ["check", "-c"]):
        r = subprocess.run([UMBRA_BIN] + args, capture_output=True, timeout=10)
        assert r.returncode not in (0, -6, -11), (args, r)
        assert r.stderr, args


def test_check_embedded_default(umbra_bin):
    r = subprocess.run([UMBRA_BIN, "check"], capture_output=True, timeout=10)
    assert r.returncode == 0, r
    out = r.stdout.decode()
    assert "127.0.0.1:8000" in out and "127.0.0.1:11434" in out, out


def test_check_missing_file(umbra_bin, tmp_path):
    r = run_check(str(tmp_path / "nope.yaml"))
    assert r.returncode != 0
    assert b"nope.yaml" in r.stdout + r.stderr


def test_sigterm_does_not_wait_for_idle_or_half_sent_requests(make_gateway, make_fake):
    """Drain waits for requests in flight, not for idle keep-alive connections or
    hanging health checks; half-sent requests hold it at most for the header/body
    timeouts."""
    f = make_fake(name="hc")
    f.health_delay = 30
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", f, health_check={"interval_s": 1, "timeout_s": 1})],
                                  [{"name": "m", "provider": "p"}],
                                  limits={"header_timeout_ms": 2500, "body_timeout_ms": 2500}))
    slow = []
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
        slow.append(s)
    partial_body = socket.create_connection(("127.0.0.1", port), timeout=5)
    partial_body.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mo")
    idle = gw.conn()
    assert idle.request("GET", "/health").status == 200
    time.sleep(1.3)  # a health check is hanging now; the half-sent requests are still open
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    rc = gw.proc.wait(10)
    took = time.monotonic() - t0
    assert rc == 0
    # bound: the 2.5 s timeouts plus a short lingering close so the 408 reaches the client
    assert took < 4.5, "drain waited %.1f s (header/body timeouts are 2.5 s)" % took
    gw.expect_exit = True
    for s in slow + [partial_body]:
        s.close()
    idle.close()


def test_client_half_close_after_request(gateway, fake):
    """shutdown(SHUT_WR) after a complete request: the answer still comes, or the
    connection is closed; either way the gateway keeps serving."""
    from fakeupstream import Behavior
    for stream in (False, True):
        fake.script(Behavior(first_byte_delay=0.2, chunk_interval=0.02))
        with gateway.conn(timeout=5) as c:
            c.send_request("POST", "/v1/chat/completions", json.dumps(chat_body("m", stream=stream)).encode(),
                           {"Content-Type": "application/json"})
            c.sock.shutdown(socket.SHUT_WR)
            data = b""
            try:
                while True:
                    d = c.sock.recv(65536)
                    if not d:
                        break
                    data += d
            except OSError:
                pass
        assert data == b"" or data.startswith(b"HTTP/1.1 200"), data[:200]
    assert gateway.chat("m").status == 200
