"""Fixtures: real `umbra serve` processes on free 127.0.0.1 ports beside fake upstreams.

* UMBRA_BIN selects the binary (default <repo>/build/umbra), so the same suite
  runs against the ASan build.
* Each gateway's config and stderr log stay in the test's tmp dir; a failed test
  gets the log tail in its report. A guard kills every process at teardown, and
  a gateway that crashed, or whose log shows a sanitizer report, fails the test.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import httpc  # noqa: E402
from fakeupstream import Behavior, FakeUpstream  # noqa: E402,F401

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
UMBRA_BIN = os.environ.get("UMBRA_BIN", os.path.join(REPO, "build", "umbra"))
START_TIMEOUT = float(os.environ.get("UMBRA_START_TIMEOUT", "15"))
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "ERROR: ThreadSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")


# ---------------------------------------------------------------- YAML ----

def _scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Block-style YAML for dicts, lists and scalars (no dependency on PyYAML)."""
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append("%s%s:" % (pad, k))
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, dict):
                lines.append("%s%s: {}" % (pad, k))
            elif isinstance(v, list):
                lines.append("%s%s: []" % (pad, k))
            else:
                lines.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, (dict, list)) and item:
                sub = to_yaml(item, indent + 2)
                lines.append(pad + "- " + sub[indent + 2:])
            else:
                lines.append("%s- %s" % (pad, _scalar(item) if not isinstance(item, (dict, list)) else "{}"))
    else:
        lines.append(pad + _scalar(obj))
    return "\n".join(lines)


# ------------------------------------------------------------- helpers ----

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def provider(name, *fakes, **kw):
    """An openai-type provider over one fake (url:) or several (endpoints:)."""
    p = {"name": name, "type": "openai"}
    if len(fakes) == 1 and not kw.pop("as_endpoints", False):
        p["url"] = fakes[0].url if hasattr(fakes[0], "url") else fakes[0]
    else:
        eps = []
        for i, f in enumerate(fakes):
            if isinstance(f, dict):
                eps.append(f)
            else:
                eps.append({"name": "%s-%d" % (name, i + 1), "url": f.url if hasattr(f, "url") else f})
        p["endpoints"] = eps
    p.update(kw)
    return p


def base_config(port, providers, models, **kw):
    cfg = {
        "listen": "127.0.0.1:%d" % port,
        "workers": 1,
        "log": {"level": "info", "requests": True},
        "providers": providers,
        "models": models,
    }
    cfg.update(kw)
    return cfg


class JsonLog:
    """A process (self.proc) writing JSON log lines to self.log_path."""

    def stop(self, timeout=10):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def logs(self):
        out = []
        for ln in self.log_text().splitlines():
            ln = ln.strip()
            if ln.startswith("{"):
                try:
                    out.append(json.loads(ln))
                except ValueError:
                    pass
        return out


class Gateway(JsonLog):
    """One `umbra serve -c FILE` process."""

    def __init__(self, workdir, name, cfg, env=None, tls_ctx=None):
        self.dir = workdir
        self.name = name
        self.cfg = cfg
        self.cfg_path = os.path.join(workdir, name + ".yaml")
        self.log_path = os.path.join(workdir, name + ".log")
        self.port = int(str(cfg["listen"]).rsplit(":", 1)[1])
        self.env = env
        self.proc = None
        self.tls_ctx = tls_ctx
        self.expect_exit = False
        self.signalled = set()

    def write_config(self, cfg=None, text=None):
        if cfg is not None:
            self.cfg = cfg
        with open(self.cfg_path, "w") as f:
            f.write(text if text is not None else to_yaml(self.cfg) + "\n")

    def start(self, wait=True):
        self.write_config()
        env = dict(os.environ)
        env.update(self.env or {})
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([UMBRA_BIN, "serve", "-c", self.cfg_path], stdout=self.logf,
                                     stderr=self.logf, stdin=subprocess.DEVNULL, env=env, cwd="/")
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=START_TIMEOUT):
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                self.expect_exit = True  # reported here; not again at teardown
                raise AssertionError("umbra exited with %s during start-up:\n%s" % (self.proc.returncode, self.tail()))
            try:
                r = httpc.request(self.port, "GET", "/health", tls=self.tls_ctx, timeout=2)
                if r.status == 200:
                    return
                last = r
            except (OSError, httpc.ConnectionClosed) as e:
                last = e
            time.sleep(0.05)
        raise AssertionError("umbra not healthy after %.0fs (last: %r):\n%s" % (timeout, last, self.tail()))

    def signal(self, sig):
        self.signalled.add(sig)
        self.proc.send_signal(sig)

    def reload(self, cfg=None, text=None):
        self.write_config(cfg, text)
        self.signal(signal.SIGHUP)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def request_logs(self):
        return [l for l in self.logs() if l.get("msg") == "request"]

    def wait_log(self, pred, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for l in self.logs():
                if pred(l):
                    return l
            time.sleep(0.05)
        return None

    def cli(self, *args, timeout=30):
        """`umbra ARGS -c <this gateway's config>`; returns stdout (fails the test on error)."""
        p = subprocess.run([UMBRA_BIN] + list(args) + ["-c", self.cfg_path], capture_output=True,
                           timeout=timeout, text=True)
        assert p.returncode == 0, (args, p.stdout, p.stderr)
        return p.stdout

    # convenience wrappers
    def get(self, path, **kw):
        return httpc.request(self.port, "GET", path, tls=self.tls_ctx, **kw)

    def post(self, path, json_body=None, body=None, headers=None, **kw):
        return httpc.request(self.port, "POST", path, body=body, json_body=json_body, headers=headers,
                             tls=self.tls_ctx, **kw)

    def chat(self, model="m", messages=None, headers=None, **extra):
        body = {"model": model, "messages": messages or [{"role": "user", "content": "hi"}]}
        body.update(extra)
        return self.post("/v1/chat/completions", json_body=body, headers=headers)

    def stream(self, body, headers=None, timeout=15.0, path="/v1/chat/completions"):
        return httpc.stream(self.port, body, headers, timeout, tls=self.tls_ctx, path=path)

    def conn(self, timeout=15.0):
        return httpc.Conn(self.port, tls=self.tls_ctx, timeout=timeout)

    def metrics(self):
        r = self.get("/metrics")
        assert r.status == 200, r
        return r.body.decode()

    def problems(self):
        """Crash or sanitizer report, as text, or None."""
        text = self.log_text()
        for m in SANITIZER_MARKS:
            if m in text:
                return "sanitizer report in %s:\n%s" % (self.log_path, self.tail(80))
        rc = self.proc.poll() if self.proc else None
        if rc is not None and rc < 0 and -rc not in self.signalled and -rc != signal.SIGKILL:
            return "umbra died of signal %d:\n%s" % (-rc, self.tail(80))
        if rc is not None and rc > 0 and not self.expect_exit:
            return "umbra exited %d unexpectedly:\n%s" % (rc, self.tail(80))
        return None


# -------------------------------------------------------------- hooks ----

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for g in getattr(item, "umbra_gateways", []):
            rep.sections.append(("umbra log tail: " + g.log_path, g.tail(40)))


# ----------------------------------------------------------- fixtures ----

@pytest.fixture(scope="session")
def umbra_bin():
    if not (os.path.isfile(UMBRA_BIN) and os.access(UMBRA_BIN, os.X_OK)):
        pytest.fail("no umbra binary at %s (run `make`, or set UMBRA_BIN)" % UMBRA_BIN)
    return UMBRA_BIN


@pytest.fixture
def make_fake(tmp_path):
    fakes = []

    def make(**kw):
        f = FakeUpstream(**kw).start()
        fakes.append(f)
        return f

    yield make
    for f in fakes:
        f.stop()


@pytest.fixture
def fake(make_fake):
    return make_fake(name="a")


@pytest.fixture
def make_gateway(request, tmp_path, umbra_bin):
    gws = []
    request.node.umbra_gateways = gws

    def make(cfg, name=None, env=None, tls_ctx=None, wait=True):
        g = Gateway(str(tmp_path), name or "umbra%d" % (len(gws) + 1), cfg, env=env, tls_ctx=tls_ctx)
        gws.append(g)
        return g.start(wait=wait)

    yield make
    problems = []
    for g in gws:
        if g.proc is not None and g.proc.poll() is None:
            g.proc.send_signal(signal.SIGTERM)
            g.signalled.add(signal.SIGTERM)
            try:
                g.proc.wait(5)
            except subprocess.TimeoutExpired:
                g.kill()
                problems.append("umbra did not exit within 5 s of SIGTERM at teardown:\n" + g.tail(30))
        p = g.problems()
        if p:
            problems.append(p)
        try:
            g.logf.close()
        except Exception:
            pass
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def gateway(make_gateway, fake):
    """One gateway, one fake: models "m" (no rewrite) and "gpt" (upstream_model rewrite)."""
    port = free_port()
    cfg = base_config(port, [provider("p", fake)], [
        {"name": "m", "provider": "p"},
        {"name": "gpt", "provider": "p", "upstream_model": "real-upstream-model"},
    ])
    return make_gateway(cfg)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A test CA and a server certificate for localhost / 127.0.0.1 (openssl CLI)."""
    d = tmp_path_factory.mktemp("certs")

    def run(*args):
        subprocess.run(["openssl"] + list(args), cwd=str(d), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3", "-subj", "/CN=umbra test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (d / "srv.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                               "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    for name in ("server", "upstream"):
        run("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=localhost")
        run("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", name + ".crt", "-days", "3", "-extfile", "srv.ext")
    return {k: str(d / v) for k, v in {
        "ca": "ca.crt", "cert": "server.crt", "key": "server.key",
        "up_cert": "upstream.crt", "up_key": "upstream.key", "dir": "."}.items()}


def run_check(cfg_path, timeout=20):
    return subprocess.run([UMBRA_BIN, "check", "-c", cfg_path], capture_output=True, timeout=timeout)


def chat_body(model="m", content="hi", **extra):
    b = {"model": model, "messages": [{"role": "user", "content": content}]}
    b.update(extra)
    return b


def assert_openai_error(r, status, etype, code=None):
    """The response is exactly an OpenAI-shaped error with this status/type/code."""
    assert r.status == status, r
    assert (r.header("content-type") or "").startswith("application/json"), r.headers
    body = json.loads(r.body)  # a complete JSON document, never partial
    assert set(body) == {"error"}, body
    err = body["error"]
    assert {"message", "type", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"], err
    assert err["type"] == etype, err
    if code is not None:
        assert err["code"] == code, err
    return err


@pytest.fixture(scope="module")
def pg():
    """A real PostgreSQL server (Debian's postgresql, started by pg_util) for
    the module's tests; each test makes its own database (pg_database)."""
    import pg_util
    try:
        pg_util.check_available()
    except pg_util.PgUnavailable as e:  # install-deps.sh installs it: a real failure
        pytest.fail("cannot start PostgreSQL: %s" % e)
    server = pg_util.PgServer().start()
    print("PostgreSQL started in %.2f s at %s" % (server.start_seconds, server.url))
    try:
        yield server
    finally:
        server.stop()


def pg_database(pg, name):
    """A fresh database on pg owned by its user; returns its store URL."""
    pg.psql('CREATE DATABASE "%s" OWNER "%s"' % (name, pg.user))
    return "postgres://%s@127.0.0.1:%d/%s" % (pg.user, pg.port, name)
