"""The vertex provider type against a fake Vertex AI and a fake Google OAuth token
endpoint (fakewire_vertex.py): OpenAI and Anthropic clients translated to Gemini
generateContent / streamGenerateContent?alt=sse and back; the service account's
RS256 JWT verified by the token endpoint with the account's public key, the
token it issues checked on every model request and refreshed before it expires;
tool calls and their results round-tripping (Gemini has no call ids: the names
and positions must line up); usage as Gemini counted it, in the answer, the log
and the audit trail / usage store; upstream failures (429 failover, 5xx,
garbage, errors and cuts mid-stream)."""

import json
import os
import re
import subprocess
import time
import types

import pytest

import fakewire_vertex as fw
import httpc
from conftest import UMBRA_BIN, Behavior, base_config, free_port, run_check

PROJECT, LOCATION = "my-proj", "us-central1"
FLASH, FLASH25, PRO = "gemini-2.0-flash-001", "gemini-2.5-flash", "gemini-2.5-pro"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city.",
    "parameters": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                   "additionalProperties": False,
                   "properties": {"city": {"type": "string"}, "unit": {"type": ["string", "null"],
                                                                      "enum": ["C", "F"]}},
                   "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {
    "tz": {"type": "string"}}}}}


@pytest.fixture
def vx(make_fake, tmp_path):
    """A token endpoint and a Vertex endpoint sharing one service account."""
    oauth = make_fake(name="oauth")
    vertex = make_fake(name="vertex")
    sa = fw.ServiceAccount(oauth.url + "/token")
    oauth.vertex_auth = vertex.vertex_auth = sa
    vertex.vertex_project, vertex.vertex_location = PROJECT, LOCATION
    key = sa.write(str(tmp_path / "sa.json"))
    return types.SimpleNamespace(oauth=oauth, fake=vertex, sa=sa, key=key, dir=tmp_path)


def vertex_provider(name, vx, **kw):
    p = {"name": name, "type": "vertex", "url": vx.fake.url, "project": PROJECT, "location": LOCATION,
         "credentials_file": vx.key}
    p.update(kw)
    return p


MODELS = [
    {"name": "gem", "provider": "vx", "upstream_model": FLASH, "fallbacks": ["gem-b"]},
    {"name": "gem-b", "provider": "vx", "upstream_model": FLASH25},
    {"name": "solo", "provider": "vx", "upstream_model": PRO},
]


@pytest.fixture
def gw(make_gateway, vx):
    return make_gateway(base_config(free_port(), [vertex_provider("vx", vx)], MODELS))


def model_posts(vx):
    return [r for r in vx.fake.requests if r.method == "POST" and fw._MODEL_PATH.match(r.path)]


def sent(vx, i=-1):
    """The i-th model request the fake got, checked by it (no wire error)."""
    req = model_posts(vx)[i]
    assert req.wire_error is None, req.wire_error
    return req


def bearer(req):
    return req.header("authorization")[len("Bearer "):]


def request_log(gw, n=1):
    def chats():
        return [l for l in gw.request_logs() if l.get("method") == "POST"]
    assert gw.wait_log(lambda l: len(chats()) >= n) is not None
    return chats()[-1]


def chat_stream(gw, model, messages=None, **extra):
    body = {"model": model, "stream": True, "messages": messages or [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return gw.stream(body)


def stream_text(data):
    return "".join(d["choices"][0]["delta"].get("content") or ""
                   for d in data if isinstance(d, dict) and d.get("choices"))


def stream_tool_calls(data):
    got = {}
    for d in data:
        if not isinstance(d, dict) or not d.get("choices"):
            continue
        for tc in d["choices"][0]["delta"].get("tool_calls") or []:
            slot = got.setdefault(tc["index"], {"id": None, "name": None, "args": ""})
            if tc.get("id"):
                slot["id"] = tc["id"]
                slot["name"] = tc["function"]["name"]
            slot["args"] += tc["function"].get("arguments") or ""
    return [got[i] for i in sorted(got)]


def finish_reasons(data):
    return [d["choices"][0]["finish_reason"] for d in data if isinstance(d, dict) and d.get("choices")
            and d["choices"][0].get("finish_reason")]


# ------------------------------------------------------- the fake itself ----

def _jwt(key, header, claims):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    h = fw._b64url(json.dumps(header).encode())
    c = fw._b64url(json.dumps(claims).encode())
    sig = key.sign((h + "." + c).encode(), padding.PKCS1v15(), hashes.SHA256())
    return h + "." + c + "." + fw._b64url(sig)


def test_fake_token_endpoint_verifies_like_google():
    """The fake refuses what Google refuses, so a gateway it accepts signs right."""
    sa = fw.ServiceAccount("https://oauth2.googleapis.com/token")
    other = fw.ServiceAccount("https://oauth2.googleapis.com/token")
    now = int(time.time())
    hdr = {"alg": "RS256", "typ": "JWT", "kid": sa.key_id}
    good = {"iss": sa.email, "scope": fw.SCOPE, "aud": sa.token_uri, "iat": now, "exp": now + 3600}
    assert sa.verify_assertion(_jwt(sa.key, hdr, good))["iss"] == sa.email
    bad = [
        (_jwt(other.key, hdr, good), "signature does not verify"),            # another key
        (_jwt(sa.key, dict(hdr, alg="RS384"), good), "not RS256"),
        (_jwt(sa.key, dict(hdr, kid="nope"), good), "kid"),
        (_jwt(sa.key, hdr, dict(good, aud="https://example.com/token")), "aud"),
        (_jwt(sa.key, hdr, dict(good, iss="x@y")), "iss"),
        (_jwt(sa.key, hdr, dict(good, scope="openid")), "scope"),
        (_jwt(sa.key, hdr, dict(good, exp=now + 7200)), "iat"),              # too long-lived
        (_jwt(sa.key, hdr, dict(good, iat=now - 7200, exp=now - 3600)), "iat"),  # expired
        (_jwt(sa.key, hdr, good)[:-3], "signature does not verify"),
        ("a.b", "JWS compact"),
    ]
    for assertion, why in bad:
        with pytest.raises(fw.WireError) as e:
            sa.verify_assertion(assertion)
        assert why in e.value.why, (why, e.value.why)


# ------------------------------------------------------ OpenAI clients ----

def test_openai_client_nonstream_token_and_translation(gw, vx):
    vx.fake.script(Behavior(content="Bonjour !", prompt_tokens=21, completion_tokens=4))
    r = gw.chat("gem", messages=[{"role": "system", "content": "Be terse."},
                                 {"role": "user", "content": "hi"}],
                temperature=0.5, top_p=0.9, max_tokens=100, stop=["END"], user="u-1")
    assert r.status == 200, r
    # the service account's assertion was verified and a token issued for it
    assert len(vx.sa.token_requests) == 1
    claims = vx.sa.token_requests[0]
    assert claims["iss"] == vx.sa.email and claims["aud"] == vx.oauth.url + "/token"
    assert claims["scope"] == fw.SCOPE and claims["exp"] - claims["iat"] == 3600
    up = sent(vx)
    assert up.target == "/v1/projects/%s/locations/%s/publishers/google/models/%s:generateContent" % (
        PROJECT, LOCATION, FLASH)
    assert vx.sa.token_state(bearer(up)) is None  # a token the endpoint issued
    assert up.header("content-type") == "application/json"
    assert up.header("x-request-id") == r.header("x-request-id")
    assert up.json() == {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "systemInstruction": {"parts": [{"text": "Be terse."}]},
        "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"]},
    }
    j = r.json()
    assert j["object"] == "chat.completion" and j["model"] == "gem"
    assert j["choices"][0]["message"]["content"] == "Bonjour !"
    assert j["choices"][0]["finish_reason"] == "stop"
    assert j["usage"]["prompt_tokens"] == 21 and j["usage"]["completion_tokens"] == 4
    assert r.header("x-umbra-provider") == "vx" and r.header("x-umbra-model") == "gem"
    # one token serves the next requests: no second exchange
    assert gw.chat("solo").status == 200
    assert len(vx.sa.token_requests) == 1 and bearer(sent(vx)) == bearer(up)


def test_openai_client_stream_and_usage(gw, vx):
    text = "un deux \u00e9t\u00e9 \u20ac\U0001F600 fin"
    vx.fake.script(Behavior(content=text, prompt_tokens=100, completion_tokens=20, cached_tokens=60))
    r, events, _ = chat_stream(gw, "gem", stream_options={"include_usage": True})
    assert r.status == 200, r
    up = sent(vx)
    assert up.target.endswith("/models/%s:streamGenerateContent?alt=sse" % FLASH)
    assert "stream" not in up.json()  # the path says it, not the body
    # the fake sent one chunk per word, usage cumulative, totals at the end
    chunks = fw.sse_chunks(up.sent_events)
    assert len(chunks) == len(text.split(" ")) + 1
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[0]["usageMetadata"]["candidatesTokenCount"] < chunks[-1]["usageMetadata"]["candidatesTokenCount"]
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    assert stream_text(data[:-1]) == text
    assert finish_reasons(data[:-1]) == ["stop"]
    usage = [d["usage"] for d in data[:-1] if d.get("usage")]
    assert usage[-1]["prompt_tokens"] == 100 and usage[-1]["completion_tokens"] == 20
    assert usage[-1].get("prompt_tokens_details", {}).get("cached_tokens") == 60
    log = request_log(gw)
    assert (log["prompt_tokens"], log["completion_tokens"]) == (100, 20)
    assert log["provider"] == "vx" and log["stream"] is True


def test_usage_in_audit_and_store(make_gateway, vx, tmp_path):
    cfg = base_config(free_port(), [vertex_provider("vx", vx)], MODELS,
                      store="sqlite://" + str(tmp_path / "u.db"), audit={"path": str(tmp_path / "audit.jsonl")})
    gw = make_gateway(cfg)
    vx.fake.script(Behavior(content="a b", prompt_tokens=31, completion_tokens=9),
                   Behavior(content="c", prompt_tokens=5, completion_tokens=2))
    assert gw.chat("solo").status == 200
    r, _, _ = chat_stream(gw, "solo")
    assert r.status == 200, r
    recs = []
    for _ in range(50):
        with open(str(tmp_path / "audit.jsonl")) as f:
            recs = [json.loads(l) for l in f if l.strip()]
        recs = [x for x in recs if x.get("model_requested") == "solo"]
        if len(recs) >= 2:
            break
        time.sleep(0.1)
    assert [(x["prompt_tokens"], x["completion_tokens"], x["provider"]) for x in recs] == [
        (31, 9, "vx"), (5, 2, "vx")]
    time.sleep(1.5)  # the usage rollup flushes every second
    p = subprocess.run([UMBRA_BIN, "usage", "-c", gw.cfg_path, "--json", "--by", "model"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    rows = [x for x in json.loads(p.stdout) if x["model"] == "solo"]
    assert len(rows) == 1 and (rows[0]["requests"], rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (2, 36, 11)


def test_images_and_schema_translation(gw, vx):
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    r = gw.chat("solo", tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}},
                messages=[{"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png}}]}])
    assert r.status == 200, r
    body = sent(vx).json()
    assert body["contents"] == [{"role": "user", "parts": [
        {"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": png}}]}]
    # JSON Schema members Vertex rejects are gone, types are Vertex's enum names
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Weather for a city.",
        "parameters": {"type": "OBJECT", "properties": {
            "city": {"type": "STRING"}, "unit": {"type": "STRING", "nullable": True, "enum": ["C", "F"]}},
            "required": ["city"]}}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}


def test_tool_call_round_trip(gw, vx):
    vx.fake.vertex_require_signatures = True  # as Gemini 3 does
    vx.fake.script(Behavior(tool_calls=[{"id": "ignored", "name": "get_weather",
                                         "arguments": "{\"city\": \"Paris\"}"}]))
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = gw.chat("solo", messages=msgs, tools=[WEATHER], tool_choice="auto")
    assert r.status == 200, r
    assert sent(vx).json()["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    # Gemini has no call ids: the gateway made one up, unique and id-safe,
    # carrying the call's thoughtSignature (Gemini 3 wants it back)
    sig = fw.thought_signature("get_weather", {"city": "Paris"})
    assert re.fullmatch(r"call_[A-Za-z0-9_-]+_0__ts_[A-Za-z0-9_-]+", call["id"]), call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}

    # the client answers the call by that id: the fake sees the native
    # functionCall / functionResponse turns, the result under the call's name
    vx.fake.script(Behavior(content="15 degrees in Paris."))
    r = gw.chat("solo", tools=[WEATHER], messages=msgs + [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "15 degrees"},
    ])
    assert r.status == 200, r
    assert sent(vx).json()["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                                     "thoughtSignature": sig}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"output": "15 degrees"}}}]},
    ]
    assert r.json()["choices"][0]["message"]["content"] == "15 degrees in Paris."
    # a call sent back without its signature is what Gemini 3 refuses
    r = gw.chat("solo", tools=[WEATHER], messages=msgs + [
        {"role": "assistant", "content": None, "tool_calls": [dict(call, id="call_other_0")]},
        {"role": "tool", "tool_call_id": "call_other_0", "content": "15 degrees"},
    ])
    assert r.status == 400 and "thought_signature" in r.json()["error"]["message"], r


def test_parallel_tool_calls_stream_and_results(gw, vx):
    calls = [{"id": "a", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
             {"id": "b", "name": "get_time", "arguments": "{\"tz\":\"CET\"}"}]
    vx.fake.script(Behavior(tool_calls=calls))
    r, events, _ = chat_stream(gw, "solo", messages=[{"role": "user", "content": "both"}], tools=[WEATHER, TIME])
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    got = stream_tool_calls(data[:-1])
    assert [(g["name"], json.loads(g["args"])) for g in got] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"tz": "CET"})]
    assert len({g["id"] for g in got}) == 2
    assert finish_reasons(data[:-1]) == ["tool_calls"]

    # both results (JSON object and text), then the user's follow-up: one user
    # turn, the results in call order, as many as the calls (Vertex checks it)
    r = gw.chat("solo", tools=[WEATHER, TIME], messages=[
        {"role": "user", "content": "both"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": g["id"], "type": "function", "function": {"name": g["name"], "arguments": g["args"]}}
            for g in got]},
        {"role": "tool", "tool_call_id": got[0]["id"], "content": "{\"temp\": 15, \"unit\": \"C\"}"},
        {"role": "tool", "tool_call_id": got[1]["id"], "content": "10:00"},
        {"role": "user", "content": "thanks"},
    ])
    assert r.status == 200, r
    contents = sent(vx).json()["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert [list(p) for p in contents[1]["parts"]] == [["functionCall", "thoughtSignature"]] * 2
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 15, "unit": "C"}}},
        {"functionResponse": {"name": "get_time", "response": {"output": "10:00"}}},
        {"text": "thanks"}]


def test_consecutive_assistant_turns_are_merged(gw, vx):
    # Vertex wants a function call turn right after a user turn: an
    # assistant text followed by an assistant tool call is one model turn
    r = gw.chat("solo", tools=[WEATHER], messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "let me see"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "x", "content": "ok"},
    ])
    assert r.status == 200, r
    assert [[list(p)[0] for p in c["parts"]] for c in sent(vx).json()["contents"]] == [
        ["text"], ["text", "functionCall"], ["functionResponse"]]


def test_upstream_invalid_argument_is_400_with_vertex_message(gw, vx):
    # two calls, one result: Vertex refuses, the client gets its 400 and words
    r = gw.chat("solo", tools=[WEATHER], messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "y", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "x", "content": "ok"},
    ])
    assert r.status == 400, r
    assert model_posts(vx)[-1].wire_error == "1 function responses for 2 calls at contents[2]"
    assert r.json()["error"]["message"] == (
        "INVALID_ARGUMENT: Please ensure that the number of function response parts is equal to the "
        "number of function call parts of the function call turn.")
    assert r.json()["error"]["type"] == "invalid_request_error"


# --------------------------------------------------- Anthropic clients ----

ANTH_BODY = {"model": "solo", "max_tokens": 256, "system": "terse",
             "messages": [{"role": "user", "content": "hi"}]}


def test_anthropic_client_nonstream_and_stream(gw, vx):
    vx.fake.script(Behavior(content="Bonjour", prompt_tokens=12, completion_tokens=3))
    r = gw.post("/v1/messages", json_body=ANTH_BODY)
    assert r.status == 200, r
    assert sent(vx).json() == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                               "systemInstruction": {"parts": [{"text": "terse"}]},
                               "generationConfig": {"maxOutputTokens": 256}}
    j = r.json()
    assert j["type"] == "message" and j["model"] == "solo"
    assert j["content"] == [{"type": "text", "text": "Bonjour"}]
    assert j["stop_reason"] == "end_turn"
    assert j["usage"]["input_tokens"] == 12 and j["usage"]["output_tokens"] == 3

    vx.fake.script(Behavior(tool_calls=[{"id": "z", "name": "f", "arguments": "{\"q\":1}"}]))
    tools = [{"name": "f", "input_schema": {"type": "object", "properties": {"q": {"type": "integer"}}}}]
    r, events, _ = gw.stream(dict(ANTH_BODY, stream=True, tools=tools), path="/v1/messages")
    assert r.status == 200, r
    evs = []
    for _, raw in events:
        lines = raw.decode().splitlines()
        name = next((l[6:].strip() for l in lines if l.startswith("event:")), None)
        data = next((json.loads(l[5:].strip()) for l in lines if l.startswith("data:")), None)
        if data is not None:
            evs.append((name, data))
    names = [n for n, _ in evs]
    assert names[0] == "message_start" and names[-1] == "message_stop"
    start = [d["content_block"] for n, d in evs if n == "content_block_start"]
    assert start[0]["type"] == "tool_use" and start[0]["name"] == "f"
    tool_id = start[0]["id"]
    args = "".join(d["delta"]["partial_json"] for n, d in evs
                   if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
    assert json.loads(args) == {"q": 1}
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use"

    # the tool_result comes back by that id: a functionResponse named f
    r = gw.post("/v1/messages", json_body=dict(ANTH_BODY, tools=tools, messages=[
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": tool_id, "name": "f", "input": {"q": 1}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "42",
                                      "is_error": True}]}]))
    assert r.status == 200, r
    assert sent(vx).json()["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"q": 1}},
                                     "thoughtSignature": fw.thought_signature("f", {"q": 1})}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"error": "42"}}}]}]


# --------------------------------------------------------- credentials ----

def test_token_fetched_at_start(gw, vx):
    # the refresher starts with the config, not with the first request
    assert vx.fake.wait_for(lambda: len(vx.sa.token_requests) >= 1), vx.sa.token_requests
    assert model_posts(vx) == []
    assert gw.chat("solo").status == 200
    assert len(vx.sa.token_requests) == 1


def test_token_refreshed_before_it_expires(make_gateway, vx):
    vx.sa.expires_in = 4  # the refresher renews at half life for short tokens
    gw = make_gateway(base_config(free_port(), [vertex_provider("vx", vx)], MODELS))
    assert gw.chat("solo").status == 200
    first = bearer(sent(vx))
    time.sleep(5)  # the first token is dead by now
    assert vx.sa.token_state(first) == "expired access token"
    r = gw.chat("solo")
    assert r.status == 200, r
    second = bearer(sent(vx))
    assert second != first and vx.sa.token_state(second) is None
    assert len(vx.sa.token_requests) >= 3  # renewed every ~2 s while the first was still valid
    assert all(q.wire_error is None for q in model_posts(vx))


def test_token_endpoint_refusal_then_recovery(make_gateway, vx):
    vx.sa.fail_with = (400, "invalid_grant", "Invalid JWT Signature.")
    gw = make_gateway(base_config(free_port(), [vertex_provider("vx", vx)], MODELS))
    r = gw.chat("solo")
    assert r.status in (502, 503), r
    assert model_posts(vx) == []  # nothing went to Vertex without a token
    line = gw.wait_log(lambda l: "cannot get an access token" in l.get("msg", ""))
    assert line is not None and "invalid_grant: Invalid JWT Signature." in line["msg"], line
    # while the refresher backs off, requests fail at once (no wait on the
    # worker), and the cause is logged once, not per request
    for _ in range(3):
        t0 = time.monotonic()
        assert gw.chat("solo").status in (502, 503)
        assert time.monotonic() - t0 < 1.0
    assert sum("cannot get an access token" in l.get("msg", "") for l in gw.logs()) == 1
    assert "ya29" not in gw.log_text() and "PRIVATE KEY" not in gw.log_text()
    vx.sa.fail_with = None
    for _ in range(40):  # retried with backoff (1 s, then 2 s)
        r = gw.chat("solo")
        if r.status == 200:
            break
        time.sleep(0.25)
    assert r.status == 200, r
    assert sent(vx).wire_error is None


def test_key_file_with_another_key_is_refused_by_google(make_gateway, vx):
    impostor = fw.ServiceAccount(vx.sa.token_uri, email=vx.sa.email)
    impostor.key_id = vx.sa.key_id
    key = impostor.write(str(vx.dir / "impostor.json"))
    gw = make_gateway(base_config(free_port(), [vertex_provider("vx", vx, credentials_file=key)], MODELS))
    r = gw.chat("solo")
    assert r.status in (502, 503), r
    assert [q.wire_error for q in vx.oauth.requests][0] == "RS256 signature does not verify"
    assert model_posts(vx) == []


def test_https_token_endpoint_trusts_ca_file(make_gateway, make_fake, certs, tmp_path):
    """token_uri and Vertex over TLS: the provider's ca_file is what the
    token exchange trusts too; without it the exchange fails (and says so)."""
    oauth = make_fake(name="oauth-tls", tls=(certs["up_cert"], certs["up_key"]))
    vertex = make_fake(name="vertex-tls", tls=(certs["up_cert"], certs["up_key"]))
    sa = fw.ServiceAccount(oauth.url + "/token")
    oauth.vertex_auth = vertex.vertex_auth = sa
    vertex.vertex_project, vertex.vertex_location = PROJECT, LOCATION
    key = sa.write(str(tmp_path / "sa-tls.json"))
    base = {"type": "vertex", "url": vertex.url, "project": PROJECT, "location": LOCATION, "credentials_file": key}
    gw = make_gateway(base_config(free_port(), [dict(base, name="trusting", ca_file=certs["ca"])],
                                  [{"name": "m", "provider": "trusting", "upstream_model": PRO}]))
    r = gw.chat("m")
    assert r.status == 200, r
    assert oauth.requests[0].wire_error is None and len(sa.token_requests) == 1
    assert sa.token_state(bearer(vertex.requests[-1])) is None

    other = make_fake(name="oauth-tls-2", tls=(certs["up_cert"], certs["up_key"]))
    sa2 = fw.ServiceAccount(other.url + "/token")
    other.vertex_auth = sa2
    key2 = sa2.write(str(tmp_path / "sa-tls-2.json"))
    gw2 = make_gateway(base_config(free_port(), [dict(base, name="plain", credentials_file=key2)],
                                   [{"name": "m", "provider": "plain", "upstream_model": PRO}]))
    r = gw2.chat("m")
    assert r.status in (502, 503), r
    assert sa2.token_requests == []
    line = gw2.wait_log(lambda l: "cannot get an access token" in l.get("msg", ""))
    assert line is not None and other.url in line["msg"], line


def test_static_access_token(make_gateway, vx):
    vx.fake.vertex_static_token = "ya29.static-token"
    provs = [vertex_provider("ok", vx, credentials_file=None, access_token="ya29.static-token"),
             vertex_provider("bad", vx, credentials_file=None, access_token="ya29.revoked")]
    for p in provs:
        del p["credentials_file"]
    gw = make_gateway(base_config(free_port(), provs, [{"name": "ok", "provider": "ok", "upstream_model": PRO},
                                                      {"name": "bad", "provider": "bad", "upstream_model": PRO}]))
    assert gw.chat("ok").status == 200
    assert bearer(sent(vx)) == "ya29.static-token"
    assert vx.oauth.requests == []
    r = gw.chat("bad")
    assert r.status == 502, r
    assert model_posts(vx)[-1].wire_error == "unknown access token"
    assert model_posts(vx)[-1].sent_status == 401
    assert "credentials" in r.json()["error"]["message"]


def test_wrong_project_is_permission_denied(make_gateway, vx):
    gw = make_gateway(base_config(free_port(), [vertex_provider("vx", vx, project="other-proj")], MODELS))
    r = gw.chat("solo")
    assert r.status == 502, r
    assert model_posts(vx)[-1].sent_status == 403
    assert model_posts(vx)[-1].wire_error == "project 'other-proj'"


def test_check_defaults_the_vertex_url(tmp_path, vx):
    cfg = tmp_path / "v.yaml"
    cfg.write_text("listen: \"127.0.0.1:%d\"\nproviders:\n  - { name: vx, type: vertex, project: p, "
                   "location: europe-west4, credentials_file: %s }\n  - { name: g, type: vertex, project: p, "
                   "location: global, access_token: t }\nmodels:\n  - { name: m, provider: vx }\n"
                   "  - { name: n, provider: g }\n" % (free_port(), vx.key))
    p = run_check(str(cfg))
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode == 0, out
    assert "https://europe-west4-aiplatform.googleapis.com" in out
    assert "https://aiplatform.googleapis.com" in out


# ------------------------------------------------------------ failures ----

def test_429_fails_over_to_fallback(gw, vx):
    vx.fake.script(Behavior(status=429, retry_after=7), Behavior(content="from 2.5"))
    r = gw.chat("gem")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "from 2.5"
    assert [fw.model_of(q) for q in model_posts(vx)] == [FLASH, FLASH25]
    assert model_posts(vx)[0].sent_status == 429
    assert json.loads(model_posts(vx)[0].sent_body)["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert r.header("x-umbra-model") == "gem-b"


def test_429_without_fallback_passed_on(gw, vx):
    vx.fake.script(Behavior(status=429, retry_after=7))
    r = gw.chat("solo")
    assert r.status == 429, r
    assert r.header("retry-after") == "7"


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_502(gw, vx, status):
    vx.fake.script(Behavior(status=status))
    r = gw.chat("solo")
    assert r.status == 502, r
    assert r.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize("stream", [False, True])
def test_garbage_is_502(gw, vx, stream):
    vx.fake.script(Behavior(garbage=True))
    if stream:
        r, _, _ = chat_stream(gw, "solo")
    else:
        r = gw.chat("solo")
    assert r.status == 502, r


def test_error_before_any_chunk_is_502(gw, vx):
    err = b'data: {"error":{"code":503,"message":"The service is currently unavailable.","status":"UNAVAILABLE"}}\r\n\r\n'
    vx.fake.script(Behavior(sse_raw=[err]))
    r, _, _ = chat_stream(gw, "solo")
    assert r.status == 502, r


def test_error_mid_stream_ends_with_an_error_event(gw, vx):
    b = Behavior(content="a b c d")
    evs = [ev for kind, ev in fw.stream_events(b, PRO, "rid") if kind == "content"][:2]
    evs.append(b'data: {"error":{"code":500,"message":"Internal error encountered.","status":"INTERNAL"}}\r\n\r\n')
    vx.fake.script(Behavior(sse_raw=evs, sse_interval=0))
    r, events, _ = chat_stream(gw, "solo")
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data and "error" in data[-1], data
    assert stream_text(data) == "a b"


def test_disconnect_mid_stream_openai_client(gw, vx):
    vx.fake.script(Behavior(content="a b c d e f", disconnect_after=2))
    r, events, _ = chat_stream(gw, "solo")
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data
    assert "error" in data[-1], data[-1]
    assert stream_text(data) == "a b"


def test_disconnect_mid_stream_anthropic_client(gw, vx):
    vx.fake.script(Behavior(content="a b c d e f", disconnect_after=2))
    r, events, _ = gw.stream(dict(ANTH_BODY, stream=True), path="/v1/messages")
    assert r.status == 200, r
    names = [l[6:].strip() for _, raw in events for l in raw.decode().splitlines() if l.startswith("event:")]
    assert names[-1] == "error" and "message_stop" not in names


def test_stream_cut_without_finish_reason(gw, vx):
    """The upstream ends the body cleanly but no chunk carried a
    finishReason: the stream was cut short, the client is told (no [DONE])."""
    b = Behavior(content="a b")
    evs = [ev for kind, ev in fw.stream_events(b, PRO, "rid") if kind == "content"]
    vx.fake.script(Behavior(sse_raw=evs, sse_interval=0))
    r, events, _ = chat_stream(gw, "solo")
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data and "error" in data[-1], data
    assert stream_text(data) == "a b"
