"""`umbra pki` and `umbra key` as a user runs them, on one store, with the
certificates checked by the openssl CLI (issue 3's CLI contract)."""
import json
import os
import subprocess

from conftest import UMBRA_BIN


def run(*args, cwd, ok=True):
    p = subprocess.run([UMBRA_BIN, *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if ok:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def write_config(d):
    (d / "umbra.yaml").write_text(
        'listen: "127.0.0.1:1"\n'
        "tls: { cert: pki/gw.crt, key: pki/gw.key, client_ca: pki/ca.crt }\n"
        'store: "sqlite://umbra.db"\n'
        "providers:\n  - { name: p, type: openai, url: \"http://127.0.0.1:9\" }\n"
        "models:\n  - { name: m, provider: p }\n")


def test_pki_issue_register_key_revoke(tmp_path):
    write_config(tmp_path)
    run("pki", "init", "--dir", "pki", cwd=tmp_path)
    # a second init must not overwrite the CA
    assert run("pki", "init", "--dir", "pki", cwd=tmp_path, ok=False).returncode != 0
    run("pki", "issue", "gw", "--kind", "gateway", "--dns", "localhost", "--ip", "127.0.0.1",
        "--dir", "pki", cwd=tmp_path)
    run("pki", "issue", "alice", "--kind", "client", "--team", "eng", "--expires", "30d",
        "--dir", "pki", "-c", "umbra.yaml", cwd=tmp_path)
    assert oct(os.stat(tmp_path / "pki" / "alice.key").st_mode & 0o777) == "0o600"
    v = subprocess.run(["openssl", "verify", "-CAfile", "pki/ca.crt", "pki/alice.crt"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    san = subprocess.run(["openssl", "x509", "-in", "pki/alice.crt", "-noout", "-ext",
                          "subjectAltName", "-subject"], cwd=tmp_path, capture_output=True,
                         text=True).stdout
    assert "URI:umbra://identity/alice" in san and "URI:umbra://kind/client" in san
    assert "CN = alice" in san and "OU = eng" in san

    key = run("key", "create", "-c", "umbra.yaml", "--identity", "alice", cwd=tmp_path)
    token = key.stdout.strip().splitlines()[-1]
    assert token.startswith("sk-umbra-")
    rows = json.loads(run("key", "list", "-c", "umbra.yaml", "--json", cwd=tmp_path).stdout)
    assert [r["identity"] for r in rows] == ["alice"] and rows[0]["status"] == "active"
    assert token.split("_")[-1] not in json.dumps(rows)  # the secret is never shown again

    # an unregistered identity gets no key
    p = run("key", "create", "-c", "umbra.yaml", "--identity", "mallory", cwd=tmp_path, ok=False)
    assert p.returncode == 1 and "not registered" in p.stderr

    run("pki", "revoke", "alice", "-c", "umbra.yaml", cwd=tmp_path)
    rows = json.loads(run("key", "list", "-c", "umbra.yaml", "--json", cwd=tmp_path).stdout)
    assert rows[0]["status"] == "revoked"  # revoking the identity revokes its keys
    p = run("key", "create", "-c", "umbra.yaml", "--identity", "alice", cwd=tmp_path, ok=False)
    assert p.returncode == 1 and "revoked" in p.stderr


def test_enrollment_token_is_a_signed_jwt(tmp_path):
    write_config(tmp_path)
    run("pki", "init", "--dir", "pki", cwd=tmp_path)
    tok = run("pki", "token", "bob", "--kind", "client", "-c", "umbra.yaml", cwd=tmp_path)
    line = tok.stdout.strip()
    assert len(line.splitlines()) == 1 and line.count(".") == 2


def test_cli_usage_errors(tmp_path):
    write_config(tmp_path)
    assert run("key", "list", cwd=tmp_path, ok=False).returncode == 2  # no -c
    assert run("pki", "frobnicate", cwd=tmp_path, ok=False).returncode == 2
