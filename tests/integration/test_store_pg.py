"""The PostgreSQL store (issue 6) against a real server started by pg_util:
the C unit test `tests/test_store_pg` (every store behaviour, quotas raced by
threads and processes, reconnects, timeouts) with UMBRA_TEST_PG_URL set, and
the `umbra pki` / `umbra key` CLI of two "replicas" (two config dirs) sharing
one `store: postgres://...`.

The unit binary sits beside UMBRA_BIN (build/tests/ or build-asan/tests/),
built by `make unit`, which `make test` and `make asan` run first.
"""
import json
import os
import subprocess
import time

import pytest

from conftest import SANITIZER_MARKS, UMBRA_BIN

UNIT_BIN = os.path.join(os.path.dirname(UMBRA_BIN), "tests", "test_store_pg")


def test_store_pg_unit(pg):
    if not os.access(UNIT_BIN, os.X_OK):
        pytest.skip("%s is not built (make unit)" % UNIT_BIN)
    env = dict(os.environ, UMBRA_TEST_PG_URL=pg.url)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
    t0 = time.monotonic()
    p = subprocess.run([UNIT_BIN], env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:] + "\n--- server log ---\n" + pg.log_tail()
    assert "skipped" not in p.stdout
    assert "[  PASSED  ]" in out, out[-3000:]
    assert not any(m in out for m in SANITIZER_MARKS), out[-6000:]
    # the concurrency proof, in the test's own words
    line = [l for l in p.stdout.splitlines() if l.startswith("quota race:")]
    assert line and "granted 5000, counter 5000" in line[0], line
    print(line[0], "(unit test %.1f s)" % (time.monotonic() - t0))


def _cli(*args, cwd, ok=True):
    p = subprocess.run([UMBRA_BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if ok:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def _config(d, url):
    d.mkdir()
    (d / "umbra.yaml").write_text(
        'listen: "127.0.0.1:1"\n'
        "tls: { cert: pki/gw.crt, key: pki/gw.key, client_ca: pki/ca.crt }\n"
        'store: "%s"\n'
        "providers:\n  - { name: p, type: openai, url: \"http://127.0.0.1:9\" }\n"
        "models:\n  - { name: m, provider: p }\n" % url)
    return d


def test_cli_replicas_share_the_store(pg, tmp_path):
    pg.psql('CREATE DATABASE cli OWNER "%s"' % pg.user)
    url = "postgres://%s@127.0.0.1:%d/cli" % (pg.user, pg.port)
    a = _config(tmp_path / "a", url)
    b = _config(tmp_path / "b", url.replace("postgres://", "postgresql://"))
    _cli("pki", "init", "--dir", "pki", cwd=a)
    _cli("pki", "issue", "alice", "--kind", "client", "--team", "eng", "--dir", "pki",
         "-c", "umbra.yaml", cwd=a)
    key = _cli("key", "create", "-c", "umbra.yaml", "--identity", "alice", cwd=a)
    assert key.stdout.strip().splitlines()[-1].startswith("sk-umbra-")
    # replica b sees a's identity and key
    rows = json.loads(_cli("key", "list", "-c", "umbra.yaml", "--json", cwd=b).stdout)
    assert [(r["identity"], r["status"]) for r in rows] == [("alice", "active")]
    p = _cli("key", "create", "-c", "umbra.yaml", "--identity", "mallory", cwd=b, ok=False)
    assert p.returncode == 1 and "not registered" in p.stderr
    # a revocation made by a reaches b
    _cli("pki", "revoke", "alice", "-c", "umbra.yaml", cwd=a)
    rows = json.loads(_cli("key", "list", "-c", "umbra.yaml", "--json", cwd=b).stdout)
    assert rows[0]["status"] == "revoked"
    p = _cli("key", "create", "-c", "umbra.yaml", "--identity", "alice", cwd=b, ok=False)
    assert p.returncode == 1 and "revoked" in p.stderr
    # what is in the database: the secret only as a 32-byte hash
    assert pg.psql("SELECT octet_length(secret_hash) FROM keys", db="cli").strip() == "32"
    assert pg.psql("SELECT value FROM revision", db="cli").strip() == "3"
