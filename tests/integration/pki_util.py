"""pki_util.py — drive `umbra pki`, `umbra key` and `umbra enroll` for the auth
tests, and talk to a gateway with real client certificates (python ssl, curl,
openssl s_client).

A Pki lives in one directory (the test's tmp dir): the CA and every issued
certificate sit in DIR/pki (the layout `umbra pki init` writes, so the gateway
finds ca.key next to tls.client_ca), the store is DIR/umbra.db, and every
command gets `-c CFG` so identities, keys and revocations go to that store.
"""

import hashlib
import json
import os
import re
import ssl
import subprocess
import time

from conftest import UMBRA_BIN, to_yaml

KEY_RE = re.compile(r"^sk-umbra-([a-z2-7]{12})_([a-z2-7]{52})$")


class CliError(AssertionError):
    pass


class Pki:
    def __init__(self, workdir, cfg_name="umbra1.yaml", pki_dir="pki"):
        self.dir = str(workdir)
        self.cfg_path = os.path.join(self.dir, cfg_name)
        self.pki_rel = pki_dir
        self.pki = os.path.join(self.dir, pki_dir)

    # -- files -------------------------------------------------------------

    def path(self, name, ext):
        return os.path.join(self.pki, "%s.%s" % (name, ext))

    @property
    def ca(self):
        return self.path("ca", "crt")

    def tls_config(self, client_auth="optional"):
        """The gateway's `tls:` block (paths relative to the config's dir)."""
        return {"cert": "%s/gw.crt" % self.pki_rel, "key": "%s/gw.key" % self.pki_rel,
                "client_ca": "%s/ca.crt" % self.pki_rel, "client_auth": client_auth}

    def write_config(self, cfg):
        """Writes the config where the gateway fixture will write it too, so the
        CLI's `-c` and the running gateway name one store."""
        with open(self.cfg_path, "w") as f:
            f.write(to_yaml(cfg) + "\n")

    def cert_fp(self, name):
        with open(self.path(name, "crt")) as f:
            pem = f.read()
        first = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest()

    # -- commands ------------------------------------------------------------

    def umbra(self, *args, ok=True, timeout=30):
        p = subprocess.run([UMBRA_BIN] + [str(a) for a in args], cwd=self.dir, capture_output=True,
                           text=True, timeout=timeout)
        if ok and p.returncode != 0:
            raise CliError("umbra %s exited %d\nstdout: %s\nstderr: %s"
                           % (" ".join(map(str, args)), p.returncode, p.stdout, p.stderr))
        return p

    def init(self):
        self.umbra("pki", "init", "--dir", self.pki_rel)
        return self

    def issue(self, name, kind="client", team=None, expires=None, break_glass=False, register=True,
              dns=(), ip=()):
        args = ["pki", "issue", name, "--kind", kind]
        if team:
            args += ["--team", team]
        if expires:
            args += ["--expires", expires]
        for d in dns:
            args += ["--dns", d]
        for a in ip:
            args += ["--ip", a]
        if break_glass:
            args.append("--break-glass")
        args += ["--dir", self.pki_rel]
        if register:
            args += ["-c", self.cfg_path]
        self.umbra(*args)
        return self.path(name, "crt"), self.path(name, "key")

    def issue_gateway(self):
        return self.issue("gw", kind="gateway", dns=["localhost"], ip=["127.0.0.1"], register=False)

    def key_create(self, identity, expires=None, label=None):
        """Returns (key, key_id)."""
        args = ["key", "create", "-c", self.cfg_path, "--identity", identity]
        if expires:
            args += ["--expires", expires]
        if label:
            args += ["--label", label]
        p = self.umbra(*args)
        key = p.stdout.strip().splitlines()[-1].strip()
        m = KEY_RE.match(key)
        assert m, "last stdout line of `umbra key create` is not a key: %r" % p.stdout
        return key, m.group(1)

    def key_revoke(self, key_id):
        return self.umbra("key", "revoke", "-c", self.cfg_path, key_id)

    def key_list(self):
        return json.loads(self.umbra("key", "list", "-c", self.cfg_path, "--json").stdout)

    def revoke(self, name):
        return self.umbra("pki", "revoke", name, "-c", self.cfg_path)

    def token(self, name, kind="client", team=None, expires=None):
        args = ["pki", "token", name, "--kind", kind]
        if team:
            args += ["--team", team]
        if expires:
            args += ["--expires", expires]
        args += ["-c", self.cfg_path]
        return self.umbra(*args).stdout.strip()

    def enroll(self, token, gateway_url, out, ok=True):
        return self.umbra("enroll", token, "--gateway", gateway_url, "--out", out, ok=ok)

    # -- clients -------------------------------------------------------------

    def ctx(self, name=None, crt=None, key=None):
        """A client TLS context that trusts only the umbra CA, presenting the
        certificate of identity NAME (or crt/key files), or none."""
        c = ssl.create_default_context(cafile=self.ca)
        if name is not None:
            crt, key = self.path(name, "crt"), self.path(name, "key")
        if crt is not None:
            c.load_cert_chain(crt, key)
        return c

    def curl(self, port, path, name=None, crt=None, key=None, body=None, headers=None, timeout=15):
        """curl over HTTPS with a client certificate. Returns
        (exit code, http status as int or 0, body text, stderr)."""
        if name is not None:
            crt, key = self.path(name, "crt"), self.path(name, "key")
        out = os.path.join(self.dir, "curl-body-%d" % time.monotonic_ns())
        args = ["curl", "-sS", "--max-time", str(timeout), "--cacert", self.ca, "-o", out,
                "-w", "%{http_code}"]
        if crt:
            args += ["--cert", crt, "--key", key]
        for k, v in (headers or {}).items():
            args += ["-H", "%s: %s" % (k, v)]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary",
                     body if isinstance(body, str) else json.dumps(body)]
        args.append("https://127.0.0.1:%d%s" % (port, path))
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 5)
        text = ""
        if os.path.exists(out):
            with open(out, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            os.unlink(out)
        code = int(p.stdout.strip() or "0") if p.stdout.strip().isdigit() else 0
        return p.returncode, code, text, p.stderr

    def s_client(self, port, name=None, crt=None, key=None, request=None, tls12=False, timeout=10):
        """openssl s_client with a client certificate; sends `request` (bytes)
        and waits for the server to close. Returns (exit code, combined output)."""
        if name is not None:
            crt, key = self.path(name, "crt"), self.path(name, "key")
        args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile", self.ca,
                "-servername", "localhost", "-ign_eof"]
        if tls12:
            args.append("-tls1_2")
        if crt:
            args += ["-cert", crt, "-key", key]
        req = request if request is not None else b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        p = subprocess.run(args, input=req, capture_output=True, timeout=timeout)
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def key_id(key):
    m = KEY_RE.match(key)
    assert m, key
    return m.group(1)


def handshake(port, ctx, timeout=5):
    """Opens TLS and does one GET /health. Returns the status, or the exception
    (ssl.SSLError / ConnectionError) when the handshake or the read failed."""
    import httpc
    try:
        with httpc.Conn(port, tls=ctx, timeout=timeout) as c:
            r = c.request("GET", "/health", headers={"Connection": "close"})
            return r.status
    except (ssl.SSLError, OSError, httpc.ConnectionClosed) as e:
        return e


def make_csr(workdir, cn, san_uris=(), tag="csr"):
    """A P-256 key and CSR made with the openssl CLI; returns the CSR PEM."""
    key = os.path.join(str(workdir), tag + ".key")
    csr = os.path.join(str(workdir), tag + ".csr")
    args = ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", csr, "-subj", "/CN=%s" % cn]
    if san_uris:
        args += ["-addext", "subjectAltName=" + ",".join("URI:" + u for u in san_uris)]
    subprocess.run(args, check=True, capture_output=True)
    with open(csr) as f:
        return f.read()


def raw_enroll(port, ca_file, token, csr_pem, timeout=10):
    """POST /enroll with python ssl (trusting the umbra CA). Returns httpc.Response."""
    import httpc
    ctx = ssl.create_default_context(cafile=ca_file)
    return httpc.request(port, "POST", "/enroll", json_body={"token": token, "csr": csr_pem}, tls=ctx,
                         timeout=timeout)


__all__ = ["Pki", "CliError", "key_id", "handshake", "make_csr", "raw_enroll"]
