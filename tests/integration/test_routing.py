"""Routing (docs/routing.md): the cascade heuristics → semantic → classifier →
default, the sensitivity guard on every request (explicit models included),
route headers, logs and metrics, team route policy, and failover that never
leaves on-prem with personal data."""

import json
import subprocess
import time

import pytest

from conftest import UMBRA_BIN, Behavior, assert_openai_error, base_config, free_port, provider


def gw_bin():
    return UMBRA_BIN

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"


def routing_cfg(port, onprem, cloud, classifier=None, routing_extra=None, **kw):
    """Two providers: an on-prem fake and a cloud fake (and a classifier fake)."""
    providers = [provider("onprem", onprem), provider("cloud", cloud)]
    models = [
        {"name": "llama", "provider": "onprem", "locality": "onprem"},
        {"name": "gpt", "provider": "cloud", "locality": "cloud", "upstream_model": "gpt-up"},
        {"name": "claude", "provider": "cloud", "locality": "cloud"},
    ]
    if classifier is not None:
        providers.append(provider("cls", classifier))
        models.append({"name": "judge", "provider": "cls", "locality": "onprem"})
    routing = {
        "default_route": "general",
        "heuristics": {"rules": [
            {"name": "code", "match": {"keywords": ["c++", "python", "stack trace", "sql"]}, "route": "coding"},
            {"name": "short", "match": {"message_length_lt": 25}, "route": "fast"},
        ]},
        "sensitive": {"detectors": ["email", "credit_card", "ssn", "iban", "phone"],
                      "action": "reroute", "route": "pii"},
        "routes": [
            {"name": "pii", "model": "llama", "description": "personal or customer data"},
            {"name": "coding", "model": "claude", "description": "software engineering",
             "examples": ["Write a function that parses dates", "Fix this bug in my code",
                          "Refactor the class to use dependency injection"]},
            {"name": "regulatory", "model": "gpt", "description": "regulation and compliance",
             "examples": ["What does Basel III require for the liquidity coverage ratio?",
                          "Which MiFID II reporting obligations apply to investment firms?",
                          "Explain the GDPR lawful bases for processing"]},
            {"name": "fast", "model": "llama", "description": "tiny tasks"},
            {"name": "general", "model": "gpt", "description": "everything else",
             "examples": ["Draft an announcement for the office party",
                          "Brainstorm names for the new team offsite"]},
        ],
    }
    if classifier is not None:
        routing["classifier"] = {"model": "judge", "timeout_ms": 500}
    routing["semantic"] = {"embedder": "builtin", "threshold": 0.6, "ambiguous_threshold": 0.2}
    routing.update(routing_extra or {})
    return base_config(port, providers, models, routing=routing, **kw)


def msgs(text, system=None):
    m = [{"role": "user", "content": text}]
    if system:
        m.insert(0, {"role": "system", "content": system})
    return m


def chat(gw, text, model=None, **extra):
    body = {"messages": msgs(text)}
    if model is not None:
        body["model"] = model
    body.update(extra)
    return gw.post("/v1/chat/completions", json_body=body)


@pytest.fixture
def fakes(make_fake):
    return make_fake(name="onprem"), make_fake(name="cloud")


@pytest.fixture
def gw(make_gateway, fakes):
    onprem, cloud = fakes
    return make_gateway(routing_cfg(free_port(), onprem, cloud))


def sent_model(fake):
    return json.loads(fake.chats()[-1].body)["model"]


def test_heuristic_route_sets_headers_and_model(gw, fakes):
    onprem, cloud = fakes
    r = chat(gw, "Why does my C++ template fail to compile with this error?")
    assert r.status == 200, r
    assert r.header("x-umbra-route") == "coding"
    assert r.header("x-umbra-route-method") == "heuristic"
    assert r.header("x-umbra-model") == "claude"
    assert sent_model(cloud) == "claude"  # "model" was absent: inserted
    # "auto" is the same as no model
    r = chat(gw, "Please explain this python stack trace to me", model="auto")
    assert r.header("x-umbra-route") == "coding" and sent_model(cloud) == "claude"


def test_short_message_rule_and_default_route(gw, fakes):
    onprem, cloud = fakes
    r = chat(gw, "Define EBITDA")
    assert r.status == 200 and r.header("x-umbra-route") == "fast", r
    assert sent_model(onprem) == "llama"
    r = chat(gw, "zzqx vlorp frumious bandersnatch gyre and gimble in the wabe")
    assert r.status == 200, r
    assert r.header("x-umbra-route") == "general"
    assert r.header("x-umbra-route-method") in ("default", "semantic")
    assert sent_model(cloud) == "gpt-up"


def test_semantic_route_with_score(gw, fakes):
    onprem, cloud = fakes
    r = chat(gw, "What does Basel III require for the liquidity coverage ratio of banks?")
    assert r.status == 200, r
    assert r.header("x-umbra-route") == "regulatory"
    assert r.header("x-umbra-route-method") == "semantic"
    assert 0.6 <= float(r.header("x-umbra-route-score")) <= 1.0


def test_sensitive_reroutes_auto_and_explicit_cloud(gw, fakes):
    onprem, cloud = fakes
    for model in (None, "auto", "gpt", "claude"):
        onprem.clear()
        cloud.clear()
        r = chat(gw, "Refund the card %s for %s please, write python for it" % (CARD, EMAIL), model=model)
        assert r.status == 200, r
        assert r.header("x-umbra-route") == "pii", model
        assert r.header("x-umbra-route-method") == "sensitive"
        assert len(cloud.chats()) == 0 and len(onprem.chats()) == 1
        assert sent_model(onprem) == "llama"
    # an explicit on-prem model keeps its model
    r = chat(gw, "my card is %s" % CARD, model="llama")
    assert r.status == 200 and r.header("x-umbra-route-method") == "explicit"
    # the log counts hits, never the text
    line = gw.wait_log(lambda l: l.get("route_method") == "sensitive")
    assert line["detectors"] == {"email": 1, "credit_card": 1}
    assert CARD not in gw.log_text() and EMAIL not in gw.log_text()


def test_explicit_model_without_pii_is_explicit(gw, fakes):
    onprem, cloud = fakes
    r = chat(gw, "Explain the python GIL", model="gpt")
    assert r.status == 200
    assert r.header("x-umbra-route-method") == "explicit"
    assert r.header("x-umbra-route") is None
    assert sent_model(cloud) == "gpt-up"


def test_block_action_403_names_detector_not_data(make_gateway, fakes):
    onprem, cloud = fakes
    cfg = routing_cfg(free_port(), onprem, cloud, routing_extra={
        "sensitive": {"detectors": ["iban", "ssn"], "action": "block"}})
    gw = make_gateway(cfg)
    iban = "DE89 3704 0044 0532 0130 00"
    r = chat(gw, "Transfer to %s and note SSN 123-45-6789" % iban, model="gpt")
    err = assert_openai_error(r, 403, "permission_error", "sensitive_data_blocked")
    assert "iban" in err["message"] and "ssn" in err["message"]
    assert iban not in r.body.decode() and "123-45-6789" not in r.body.decode()
    assert r.header("x-umbra-route-method") == "sensitive"
    assert len(cloud.chats()) == 0 and len(onprem.chats()) == 0
    # the gateway keeps serving
    assert chat(gw, "hello there, how are you doing today my friend?").status == 200


def test_failover_never_leaves_onprem_with_pii(make_gateway, make_fake):
    dead = make_fake(name="dead")
    cloud = make_fake(name="cloud")
    dead.default = Behavior(status=503)
    cfg = base_config(free_port(), [provider("onprem", dead), provider("cloud", cloud)], [
        {"name": "llama", "provider": "onprem", "locality": "onprem", "fallbacks": ["gpt"]},
        {"name": "gpt", "provider": "cloud", "locality": "cloud"},
    ], routing={"default_route": "general",
                "sensitive": {"action": "reroute", "route": "pii"},
                "routes": [{"name": "pii", "model": "llama"}, {"name": "general", "model": "gpt"}]})
    gw = make_gateway(cfg)
    r = chat(gw, "card %s" % CARD, model="llama")
    assert r.status == 502, r  # the cloud fallback is skipped
    assert len(cloud.chats()) == 0
    # without personal data the same request falls back to the cloud
    r = chat(gw, "nothing personal here at all", model="llama")
    assert r.status == 200 and len(cloud.chats()) == 1


def test_classifier_decides_ambiguous_and_is_cached(make_gateway, fakes, make_fake):
    onprem, cloud = fakes
    judge = make_fake(name="judge")
    cfg = routing_cfg(free_port(), onprem, cloud, classifier=judge, routing_extra={
        "semantic": {"embedder": "builtin", "threshold": 0.99, "ambiguous_threshold": -1}})
    gw = make_gateway(cfg)
    judge.script(Behavior(content='```json\n{"route": "regulatory", "confidence": 0.9}\n```'))
    text = "Tell me about the quarterly planning process for next year"
    r = chat(gw, text)
    assert r.status == 200, r
    assert r.header("x-umbra-route") == "regulatory"
    assert r.header("x-umbra-route-method") == "classifier"
    assert len(judge.chats()) == 1
    asked = json.loads(judge.chats()[0].body)
    assert asked["model"] == "judge" and asked.get("stream") is not True
    assert text in asked["messages"][-1]["content"]
    # same text: answered from the cache, no second call
    r = chat(gw, text)
    assert r.header("x-umbra-route") == "regulatory" and len(judge.chats()) == 1


@pytest.mark.parametrize("behavior", [
    dict(content="I think it is probably regulatory"),         # no JSON
    dict(content='{"route": "nonexistent", "confidence": 1}'),  # unknown route
    dict(content='{"route": "coding", "confidence": 0.1}'),     # not confident
    dict(garbage=True),                                         # not JSON at all
    dict(status=500),                                           # upstream error
    dict(first_byte_delay=2.0),                                 # timeout (500 ms)
])
def test_classifier_garbage_or_timeout_uses_default(make_gateway, fakes, make_fake, behavior):
    onprem, cloud = fakes
    judge = make_fake(name="judge")
    cfg = routing_cfg(free_port(), onprem, cloud, classifier=judge, routing_extra={
        "semantic": {"embedder": "builtin", "threshold": 0.99, "ambiguous_threshold": -1}})
    gw = make_gateway(cfg)
    judge.default = Behavior(**behavior)
    t0 = time.monotonic()
    r = chat(gw, "Tell me about the quarterly planning process for next year")
    took = time.monotonic() - t0
    assert r.status == 200, r
    assert r.header("x-umbra-route") == "general"
    assert r.header("x-umbra-route-method") == "default"
    assert took < 1.8, took  # the 500 ms classifier timeout bounds the wait
    line = gw.wait_log(lambda l: l.get("route_method") == "default")
    assert any(t.get("layer") == "classifier" for t in line["route_trace"])


def test_team_route_policy_403(make_gateway, fakes, tmp_path):
    onprem, cloud = fakes
    cfg = routing_cfg(free_port(), onprem, cloud, auth={"mode": "keys"},
                      teams=[{"name": "ops", "models": ["*"], "routes": ["general", "fast", "pii"]},
                             {"name": "dev", "models": ["*"]}],
                      identities=[{"name": "olga", "team": "ops"}, {"name": "dan", "team": "dev"}])
    gw = make_gateway(cfg)
    keys = {}
    pki = str(tmp_path / "pki")
    subprocess.run([gw_bin(), "pki", "init", "--dir", pki], check=True, capture_output=True)
    for who in ("olga", "dan"):
        gw.cli("pki", "issue", who, "--kind", "client", "--dir", pki)
        out = gw.cli("key", "create", "--identity", who)
        keys[who] = out.strip().splitlines()[-1]
    hdr = lambda who: {"Authorization": "Bearer " + keys[who]}
    body = {"messages": msgs("Why does my C++ template fail to compile?")}
    r = gw.post("/v1/chat/completions", json_body=body, headers=hdr("olga"))
    err = assert_openai_error(r, 403, "permission_error", "route_not_allowed")
    assert "coding" in err["message"]
    assert r.header("x-umbra-route") == "coding"
    r = gw.post("/v1/chat/completions", json_body=body, headers=hdr("dan"))
    assert r.status == 200 and r.header("x-umbra-route") == "coding"


def test_models_lists_auto_and_metrics(gw, fakes):
    ids = [m["id"] for m in gw.get("/v1/models").json()["data"]]
    assert "auto" in ids
    chat(gw, "Why does my C++ template fail to compile with this error?")
    chat(gw, "my card is %s" % CARD)
    m = gw.metrics()
    assert 'umbra_route_decisions_total{method="heuristic",route="coding"} 1' in m
    assert 'umbra_route_decisions_total{method="sensitive",route="pii"} 1' in m
    assert 'umbra_detector_hits_total{detector="credit_card"} 1' in m


@pytest.mark.parametrize("body", [
    b'{"messages": [{"role": "user", "content": "hi"}, 5]}',
    b'{"messages": [{"content": "no role"}]}',
    b'{"messages": "not an array"}',
    b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}',
    b'{"messages": []}',
])
def test_hostile_bodies_get_400_and_gateway_keeps_serving(gw, body):
    r = gw.post("/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400, "invalid_request_error")
    assert chat(gw, "Why does my C++ template fail to compile with this error?").status == 200


def test_content_parts_and_system_prompt_are_scanned(gw, fakes):
    onprem, cloud = fakes
    body = {"messages": [
        {"role": "system", "content": "Customer: %s" % EMAIL},
        {"role": "user", "content": [{"type": "text", "text": "summarise the account please"},
                                     {"type": "image_url", "image_url": {"url": "data:,"}}]}]}
    r = gw.post("/v1/chat/completions", json_body=body)
    assert r.status == 200 and r.header("x-umbra-route") == "pii", r
    assert len(cloud.chats()) == 0


# ---- a provider embedder (OpenAI /v1/embeddings) ----

TOPICS = [("python", "sql", "code", "bug", "function"),
          ("basel", "gdpr", "regulation", "mifid", "capital"),
          ("party", "announcement", "offsite", "newsletter", "speech")]


def topic_embedder(fake, dim_extra=0):
    """The fake embeds text by topic words, so similarity follows topics."""
    def handler(req):
        if req.path != "/v1/embeddings":
            return None
        inp = json.loads(req.body)["input"]
        data = []
        for i, text in enumerate(inp):
            low = text.lower()
            vec = [float(sum(low.count(w) for w in ws)) for ws in TOPICS] + [0.05] + [0.0] * dim_extra
            data.append({"object": "embedding", "index": i, "embedding": vec})
        data.reverse()  # any order, by index
        return Behavior(body=json.dumps({"object": "list", "data": data, "model": "e",
                                         "usage": {"prompt_tokens": 1, "total_tokens": 1}}).encode())
    fake.handler = handler


def provider_embedder_cfg(onprem, cloud, emb, **kw):
    cfg = routing_cfg(free_port(), onprem, cloud, routing_extra={
        "heuristics": {"enabled": False},
        "semantic": {"provider": "emb", "model": "text-embed", "threshold": 0.8,
                     "ambiguous_threshold": 0.5, "timeout_ms": 500}}, **kw)
    cfg["providers"].append(provider("emb", emb))
    return cfg


def test_provider_embedder_routes_and_builds_index_once(make_gateway, fakes, make_fake):
    onprem, cloud = fakes
    emb = make_fake(name="emb")
    topic_embedder(emb)
    gw = make_gateway(provider_embedder_cfg(onprem, cloud, emb))
    r = chat(gw, "Our python function has a bug in the sql code")
    assert r.status == 200, r
    assert r.header("x-umbra-route") == "coding" and r.header("x-umbra-route-method") == "semantic"
    first = json.loads(emb.posts("/v1/embeddings")[0].body)
    assert first["model"] == "text-embed"
    # every example, the description of a route without examples (pii, fast), the prompt
    assert len(first["input"]) == 3 + 3 + 2 + 2 + 1
    assert "personal or customer data" in first["input"]
    assert first["input"][-1] == "Our python function has a bug in the sql code"
    r = chat(gw, "What capital does Basel require under the regulation?")
    assert r.header("x-umbra-route") == "regulatory", r
    second = json.loads(emb.posts("/v1/embeddings")[1].body)
    assert second["input"] == ["What capital does Basel require under the regulation?"]
    # the same text again: the cached result, no embedder call
    chat(gw, "What capital does Basel require under the regulation?")
    assert len(emb.posts("/v1/embeddings")) == 2
    # the guard runs first: personal data never reaches the embedder
    r = chat(gw, "python code for card %s" % CARD)
    assert r.header("x-umbra-route") == "pii" and len(emb.posts("/v1/embeddings")) == 2


@pytest.mark.parametrize("behavior", [dict(status=500), dict(garbage=True), dict(first_byte_delay=2.0),
                                      dict(body=b'{"data":[{"embedding":[1,"x"]}]}')])
def test_provider_embedder_down_goes_on_to_default(make_gateway, fakes, make_fake, behavior):
    onprem, cloud = fakes
    emb = make_fake(name="emb")
    emb.default = Behavior(**behavior)
    gw = make_gateway(provider_embedder_cfg(onprem, cloud, emb))
    t0 = time.monotonic()
    r = chat(gw, "Our python function has a bug in the sql code")
    assert r.status == 200, r
    assert r.header("x-umbra-route") == "general" and r.header("x-umbra-route-method") == "default"
    assert time.monotonic() - t0 < 1.8
    line = gw.wait_log(lambda l: l.get("route_method") == "default")
    assert any(t.get("result") == "embedder unavailable" for t in line["route_trace"]), line


# ---- umbra route --explain ----

def explain(cfg_path, lines, timeout=30):
    inp = "".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines)
    p = subprocess.run([UMBRA_BIN, "route", "-c", cfg_path, "--explain"], input=inp,
                       capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr
    return [json.loads(l) for l in p.stdout.splitlines()]


def test_explain_cli(tmp_path, fakes, make_fake):
    from conftest import to_yaml
    onprem, cloud = fakes
    judge = make_fake(name="judge")
    judge.script(Behavior(content='Sure! {"route": "fast", "confidence": 0.95}'))
    cfg = routing_cfg(free_port(), onprem, cloud, classifier=judge, routing_extra={
        "semantic": {"embedder": "builtin", "threshold": 0.99, "ambiguous_threshold": -1}})
    path = tmp_path / "route.yaml"
    path.write_text(to_yaml(cfg) + "\n")
    out = explain(str(path), [
        {"messages": msgs("Why does my C++ template fail to compile?")},
        {"messages": msgs("mail a@example.com and A@example.com and b@example.com, card %s twice %s" % (CARD, CARD))},
        {"model": "llama", "messages": msgs("card %s" % CARD)},
        {"messages": msgs("Tell me about the quarterly planning process for next year")},
        "this is not json",
        {"messages": "nope"},
    ])
    assert len(out) == 6
    assert out[0]["route"] == "coding" and out[0]["method"] == "heuristic" and out[0]["score"] == 1.0
    assert [t["layer"] for t in out[0]["trace"]] == ["sensitive", "heuristics"]
    assert 'keyword "c++"' in out[0]["trace"][1]["why"]  # the CLI says why a rule matched
    # distinct matches: the two spellings of one address are one value
    assert out[1]["route"] == "pii" and out[1]["method"] == "sensitive"
    assert out[1]["detectors"] == {"email": 2, "credit_card": 1}
    assert out[2]["route"] is None and out[2]["method"] == "explicit" and out[2]["model"] == "llama"
    assert out[3]["route"] == "fast" and out[3]["method"] == "classifier"
    assert abs(out[3]["score"] - 0.95) < 1e-6
    assert len(judge.chats()) == 1  # the one network call
    assert len(onprem.chats()) == 0 and len(cloud.chats()) == 0
    assert "error" in out[4] and "error" in out[5]


def test_routed_stream(gw, fakes):
    onprem, cloud = fakes
    import httpc
    r, events, _ = gw.stream({"messages": msgs("Why does my C++ template fail to compile?"),
                              "stream": True})
    assert r.status == 200
    assert r.header("x-umbra-route") == "coding"
    assert httpc.sse_data(events)[-1] == "[DONE]"
    sent = json.loads(cloud.chats()[-1].body)
    assert sent["model"] == "claude" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


def test_cascade_order_stops_at_the_first_layer_that_decides(make_gateway, fakes, make_fake):
    onprem, cloud = fakes
    judge = make_fake(name="judge")
    judge.default = Behavior(content='{"route": "general", "confidence": 1}')
    cfg = routing_cfg(free_port(), onprem, cloud, classifier=judge, routing_extra={
        "semantic": {"embedder": "builtin", "threshold": 0.3, "ambiguous_threshold": 0.0}})
    gw = make_gateway(cfg)
    # a rule decides even though the prompt reads as regulatory: no later layer runs
    r = chat(gw, "Basel III in C++?")
    assert (r.header("x-umbra-route"), r.header("x-umbra-route-method")) == ("coding", "heuristic")
    line = gw.wait_log(lambda l: l.get("route_method") == "heuristic")
    assert [t["layer"] for t in line["route_trace"]] == ["sensitive", "heuristics"]
    # the embedder is confident: the classifier is not asked
    r = chat(gw, "Which MiFID II reporting obligations apply to investment firms in the EU?")
    assert (r.header("x-umbra-route"), r.header("x-umbra-route-method")) == ("regulatory", "semantic")
    # the guard comes before every layer
    r = chat(gw, "Basel III in C++? mail %s" % EMAIL)
    assert r.header("x-umbra-route-method") == "sensitive"
    assert len(judge.chats()) == 0
    # only an unsure embedder asks the classifier
    r = chat(gw, "zzqx vlorp frumious bandersnatch gyre and gimble in the wabe today")
    assert (r.header("x-umbra-route"), r.header("x-umbra-route-method")) == ("general", "classifier")
    assert len(judge.chats()) == 1


def test_embeddings_guard(gw, fakes):
    onprem, cloud = fakes
    body = {"model": "gpt", "input": ["a harmless sentence", "write to %s" % EMAIL]}
    r = gw.post("/v1/embeddings", json_body=body)
    err = assert_openai_error(r, 403, "permission_error", "sensitive_data_blocked")
    assert "email" in err["message"] and EMAIL not in r.body.decode()
    assert len(cloud.posts("/v1/embeddings")) == 0
    # on-prem models may embed it; clean text may go anywhere
    assert gw.post("/v1/embeddings", json_body=dict(body, model="llama")).status == 200
    assert gw.post("/v1/embeddings", json_body={"model": "gpt", "input": "clean text"}).status == 200
    assert gw.post("/v1/embeddings", json_body={"model": "gpt", "input": [[1, 2, 3]]}).status == 200
