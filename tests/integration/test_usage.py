"""Usage rollups (issue 6): every served request is summed per day,
identity, team, model and provider into the store; `umbra usage` and
GET /admin/usage report what the upstreams said they used."""

import json
import subprocess
import time

from conftest import UMBRA_BIN, Behavior, base_config, free_port, provider


def umbra(*args):
    p = subprocess.run([UMBRA_BIN] + list(args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p.stdout


def test_usage_rollups_cli_and_admin(make_gateway, fake, tmp_path):
    cfg = base_config(free_port(), [provider("p", fake)], [
        {"name": "m", "provider": "p", "price": {"input_per_mtok": 1000, "output_per_mtok": 2000}},
        {"name": "n", "provider": "p", "upstream_model": "gpt-4o-mini"},   # the built-in table
        {"name": "local", "provider": "p", "locality": "onprem"}],
        auth={"mode": "keys"}, store="sqlite://usage.db",
        teams=[{"name": "eng", "models": ["*"]}, {"name": "ops", "models": ["*"]}],
        identities=[{"name": "alice", "team": "eng"}, {"name": "bob", "team": "ops"},
                    {"name": "root", "team": "ops"}])
    gw = make_gateway(cfg)
    pki = str(tmp_path / "pki")
    umbra("pki", "init", "--dir", pki)
    keys = {}
    for who, kind in (("alice", "client"), ("bob", "client"), ("root", "admin")):
        umbra("pki", "issue", who, "--kind", kind, "--dir", pki, "-c", gw.cfg_path)
        keys[who] = umbra("key", "create", "-c", gw.cfg_path, "--identity", who).strip().splitlines()[-1]

    def chat(who, model, n_prompt, n_completion, stream=False):
        fake.script(Behavior(prompt_tokens=n_prompt, completion_tokens=n_completion))
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        hdr = {"Authorization": "Bearer " + keys[who]}
        if stream:
            body["stream"] = True
            r, _, _ = gw.stream(body, headers=hdr)
        else:
            r = gw.post("/v1/chat/completions", json_body=body, headers=hdr)
        assert r.status == 200, r

    sent = {}  # (identity, model) -> [requests, prompt, completion]
    plan = [("alice", "m", 10, 5, False), ("alice", "m", 7, 3, True), ("alice", "n", 100, 1, False),
            ("bob", "m", 2, 2, True), ("bob", "m", 1000, 2000, False)]
    for who, model, p, c, st in plan:
        chat(who, model, p, c, st)
        s = sent.setdefault((who, model), [0, 0, 0])
        s[0] += 1
        s[1] += p
        s[2] += c
    # refused requests are not usage
    assert gw.post("/v1/chat/completions", json_body={"model": "m", "messages": []},
                   headers={"Authorization": "Bearer " + keys["alice"]}).status == 400
    time.sleep(1.5)  # the gateway flushes every second

    rows = json.loads(umbra("usage", "-c", gw.cfg_path, "--team", "eng", "--json"))
    got = {r["model"]: r for r in rows}
    assert set(got) == {"m", "n"}
    assert (got["m"]["requests"], got["m"]["prompt_tokens"], got["m"]["completion_tokens"]) == (2, 17, 8)
    assert (got["n"]["requests"], got["n"]["prompt_tokens"], got["n"]["completion_tokens"]) == (1, 100, 1)
    # cost from the config price: 0.001 USD per prompt token, 0.002 per completion token
    assert abs(got["m"]["cost_usd"] - (17 * 0.001 + 8 * 0.002)) < 1e-9
    assert got["n"]["cost_usd"] > 0   # gpt-4o-mini is in the built-in table
    assert all(r["team"] == "eng" for r in rows)
    rows = json.loads(umbra("usage", "-c", gw.cfg_path, "--by", "identity", "--json"))
    by_id = {r["identity"]: r for r in rows}
    for who in ("alice", "bob"):
        want = [sum(v[i] for (w, _), v in sent.items() if w == who) for i in range(3)]
        assert [by_id[who][k] for k in ("requests", "prompt_tokens", "completion_tokens")] == want
    chat("bob", "local", 50, 50)   # on-prem: free
    sent[("bob", "local")] = [1, 50, 50]
    time.sleep(1.2)
    rows = json.loads(umbra("usage", "-c", gw.cfg_path, "--identity", "bob", "--json"))
    assert [r["cost_usd"] for r in rows if r["model"] == "local"] == [0]
    csv = umbra("usage", "-c", gw.cfg_path, "--by", "team", "--csv").splitlines()
    assert csv[0] == "team,requests,prompt_tokens,completion_tokens,cost_usd"
    assert csv[1].startswith("eng,3,117,9,") and csv[2].startswith("ops,3,1052,2052,")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    rows = json.loads(umbra("usage", "-c", gw.cfg_path, "--by", "day", "--since", day, "--json"))
    assert len(rows) == 1 and rows[0]["day"] == day and rows[0]["requests"] == 6

    # the admin API, admin credentials only
    r = gw.get("/admin/usage?by=identity&team=ops", headers={"Authorization": "Bearer " + keys["root"]})
    assert r.status == 200, r
    assert [(x["identity"], x["requests"]) for x in r.json()] == [("bob", 3)]
    r = gw.get("/admin/usage", headers={"Authorization": "Bearer " + keys["alice"]})
    assert r.status == 403
    r = gw.get("/admin/usage?since=yesterday", headers={"Authorization": "Bearer " + keys["root"]})
    assert r.status == 400

    # what is pending at shutdown is written too
    chat("alice", "n", 1, 1)
    gw.stop()
    rows = json.loads(umbra("usage", "-c", gw.cfg_path, "--identity", "alice", "--json"))
    assert sum(r["requests"] for r in rows) == 4
