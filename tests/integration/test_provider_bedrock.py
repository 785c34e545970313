"""The bedrock provider type against a fake Bedrock Runtime (fakewire_bedrock.py):
OpenAI and Anthropic clients translated to Converse / ConverseStream and back,
every request SigV4-signed (the fake recomputes the signature with its own
Python signer and refuses a wrong one like AWS does), tool calls and their
results round-tripping with ids intact, usage as Bedrock counted it, the AWS
credentials chain (config, environment, shared credentials file), and upstream
failures (429 failover, 5xx, garbage, exceptions and cuts mid-stream)."""

import hashlib
import json
import os
import time

import pytest

import fakewire_bedrock as fw
import httpc
from conftest import Behavior, base_config, free_port

AKID = "AKIAUMBRATESTKEY0001"
SECRET = "umbra/test+secret/0123456789abcdefghijklmnop"
STS_AKID = "ASIAUMBRATESTKEY0002"
STS_SECRET = "sts-secret-0123456789"
STS_TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+test=="
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
LLAMA = "meta.llama3-70b-instruct-v1:0"
# the gateway must not pick up credentials from the test runner's environment
NO_AWS_ENV = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "",
              "AWS_PROFILE": "", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials"}


def bedrock_provider(name, fake, **kw):
    p = {"name": name, "type": "bedrock", "url": fake.url, "region": "us-east-1",
         "access_key_id": AKID, "secret_access_key": SECRET}
    p.update(kw)
    return p


@pytest.fixture
def gw(make_gateway, fake):
    """claude → Bedrock haiku, falling back to claude-b (sonnet); solo has no
    fallback; sts signs with a session token."""
    fake.aws_keys = {AKID: SECRET, STS_AKID: STS_SECRET}
    fake.aws_tokens = {STS_AKID: STS_TOKEN}
    cfg = base_config(free_port(), [
        bedrock_provider("br", fake),
        bedrock_provider("br-sts", fake, access_key_id=STS_AKID, secret_access_key=STS_SECRET,
                         session_token=STS_TOKEN),
    ], [
        {"name": "claude", "provider": "br", "upstream_model": HAIKU, "fallbacks": ["claude-b"]},
        {"name": "claude-b", "provider": "br", "upstream_model": SONNET},
        {"name": "solo", "provider": "br", "upstream_model": LLAMA},
        {"name": "sts", "provider": "br-sts", "upstream_model": HAIKU},
    ])
    return make_gateway(cfg, env=NO_AWS_ENV)


def converse_posts(fake):
    return [r for r in fake.requests if fw.match(r)]


def sent(fake, i=-1):
    """The i-th Converse request the fake got, checked by it (no wire error)."""
    req = converse_posts(fake)[i]
    assert getattr(req, "wire_error", None) is None, req.wire_error
    return req


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


# ------------------------------------------------- the fake itself ----

class _Req:
    """Enough of fakeupstream.Request for the fake's signer."""

    def __init__(self, method, target, headers, body=b""):
        self.method, self.target, self.body = method, target, body
        self.headers = [(k.lower(), v) for k, v in headers]

    def header(self, name, default=None):
        return next((v for k, v in self.headers if k == name), default)

    def header_all(self, name):
        return [v for k, v in self.headers if k == name]


@pytest.mark.parametrize("name,method,target,headers,body,want", [
    # aws-sig-v4-test-suite (2015-08-30): the fake's signer is right on its own,
    # so a gateway it accepts signs correctly
    ("get-vanilla", "GET", "/", [], b"", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("post-vanilla", "POST", "/", [], b"", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
    ("get-vanilla-query-order-key-case", "GET", "/?Param2=value2&Param1=value1", [], b"",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("get-header-value-trim", "GET", "/", [("My-Header1", " value1"), ("My-Header2", ' "a   b   c"')], b"",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    ("post-x-www-form-urlencoded", "POST", "/", [("Content-Type", "application/x-www-form-urlencoded")],
     b"Param1=value1", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ("get-space", "GET", "/example%20space/", [], b"",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"),
])
def test_fake_signer_matches_aws_vectors(name, method, target, headers, body, want):
    hdrs = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")] + headers
    req = _Req(method, target, hdrs, body)
    signed = sorted({k for k, _ in req.headers})
    # the suite's paths are raw text: the fake signs the wire path encoded
    # once more, so give it what an SDK would have sent (get-space: %20)
    creq = fw.canonical_request(req, signed)
    sts = "\n".join(["AWS4-HMAC-SHA256", "20150830T123600Z", "20150830/us-east-1/service/aws4_request",
                     hashlib.sha256(creq.encode()).hexdigest()])
    if name == "get-space":
        # double-encoded like every non-S3 service: not the suite's single encoding
        assert creq.split("\n")[1] == "/example%2520space/"
        return
    assert fw.signature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "service",
                        sts) == want


def test_fake_event_stream_round_trip():
    b = Behavior(content="a b", prompt_tokens=5, completion_tokens=2, cached_tokens=3)
    msgs = fw.decode_stream(b"".join(ev for _, ev in fw.stream_events(b)))
    types = [h[":event-type"] for h, _ in msgs]
    assert types == ["messageStart", "contentBlockDelta", "contentBlockDelta", "contentBlockStop",
                     "messageStop", "metadata"]
    assert json.loads(msgs[-1][1])["usage"] == {"inputTokens": 2, "outputTokens": 2, "totalTokens": 7,
                                                "cacheReadInputTokens": 3, "cacheWriteInputTokens": 0}


# ------------------------------------------------- OpenAI clients ----

def test_openai_client_nonstream_signed_and_translated(gw, fake):
    r = gw.chat("claude", messages=[{"role": "system", "content": "Be terse."},
                                    {"role": "user", "content": "hi"}],
                temperature=0.5, max_tokens=100, stop=["END"])
    assert r.status == 200, r
    up = sent(fake)
    # the model id is one path segment, ':' percent-encoded on the wire ...
    assert up.target == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert up.model_id == HAIKU
    # ... and encoded again in what was signed
    assert "\n/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse\n" in up.canonical_request
    assert up.aws_akid == AKID
    authz = up.header("authorization")
    assert authz.startswith("AWS4-HMAC-SHA256 Credential=%s/" % AKID)
    assert "/us-east-1/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-date, " in authz
    assert up.header("x-amz-security-token") is None
    assert up.header("content-type") == "application/json"
    assert up.header("accept") == "application/json"
    assert up.header("x-request-id") == r.header("x-request-id")
    assert up.json() == {
        "messages": [{"role": "user", "content": [{"text": "hi"}]}],
        "system": [{"text": "Be terse."}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]},
    }
    j = r.json()
    assert j["object"] == "chat.completion" and j["model"] == "claude"
    assert j["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert j["choices"][0]["finish_reason"] == "stop"
    assert j["usage"]["prompt_tokens"] == 11 and j["usage"]["completion_tokens"] == 7
    assert r.header("x-umbra-provider") == "br" and r.header("x-umbra-model") == "claude"


def test_openai_client_stream_and_usage(gw, fake):
    fake.script(Behavior(content="un deux \u00e9t\u00e9 \u20ac\U0001F600 fin", prompt_tokens=100,
                         completion_tokens=20, cached_tokens=60))
    r, events, _ = chat_stream(gw, "claude", stream_options={"include_usage": True})
    assert r.status == 200, r
    up = sent(fake)
    assert up.target == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    assert up.header("accept") == "application/vnd.amazon.eventstream"
    assert "stream" not in up.json()  # the path says it, not the body
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    assert stream_text(data[:-1]) == "un deux \u00e9t\u00e9 \u20ac\U0001F600 fin"
    assert [d["choices"][0]["finish_reason"] for d in data[:-1] if d.get("choices")][-1] == "stop"
    usage = [d["usage"] for d in data[:-1] if d.get("usage")]
    # Bedrock's inputTokens leaves the cache reads out; prompt_tokens counts them
    assert usage[-1]["prompt_tokens"] == 100 and usage[-1]["completion_tokens"] == 20
    assert usage[-1].get("prompt_tokens_details", {}).get("cached_tokens") == 60
    log = request_log(gw)
    assert (log["prompt_tokens"], log["completion_tokens"]) == (100, 20)
    assert log["provider"] == "br" and log["stream"] is True


def test_usage_without_include_usage_still_counted(gw, fake):
    fake.script(Behavior(content="x", prompt_tokens=33, completion_tokens=4))
    r, events, _ = chat_stream(gw, "solo")
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]" and not [d for d in data[:-1] if d.get("usage")]
    log = request_log(gw)
    assert (log["prompt_tokens"], log["completion_tokens"]) == (33, 4)


def test_tool_call_round_trip_ids_preserved(gw, fake):
    fake.script(Behavior(tool_calls=[{"id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather",
                                      "arguments": "{\"city\": \"Paris\"}"}]))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}}}}]
    r = gw.chat("claude", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools,
                tool_choice="auto")
    assert r.status == 200, r
    assert sent(fake).json()["toolConfig"] == {
        "tools": [{"toolSpec": {"name": "get_weather", "description": "weather", "inputSchema": {
            "json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
        "toolChoice": {"auto": {}}}
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}

    # the client answers the call: the fake sees native toolUse/toolResult, ids intact
    r = gw.chat("claude", tools=tools, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "15 degrees"},
    ])
    assert r.status == 200, r
    assert sent(fake).json()["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                                       "name": "get_weather", "input": {"city": "Paris"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
                                                     "content": [{"text": "15 degrees"}]}}]},
    ]


def test_parallel_tool_calls_stream_and_results(gw, fake):
    calls = [{"id": "tooluse_A", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
             {"id": "tooluse_B", "name": "get_time", "arguments": "{\"tz\":\"CET\"}"}]
    fake.script(Behavior(tool_calls=calls))
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
             for n in ("get_weather", "get_time")]
    r, events, _ = chat_stream(gw, "claude", messages=[{"role": "user", "content": "both"}], tools=tools)
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    got = stream_tool_calls(data[:-1])
    assert [(g["id"], g["name"], json.loads(g["args"])) for g in got] == [
        ("tooluse_A", "get_weather", {"city": "Paris"}), ("tooluse_B", "get_time", {"tz": "CET"})]
    assert [d["choices"][0]["finish_reason"] for d in data[:-1] if d.get("choices")][-1] == "tool_calls"

    # both results (two `tool` messages) and the user's follow-up: ONE user turn,
    # the results first, each answering its call by id
    r = gw.chat("claude", tools=tools, messages=[
        {"role": "user", "content": "both"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": g["id"], "type": "function", "function": {"name": g["name"], "arguments": g["args"]}}
            for g in got]},
        {"role": "tool", "tool_call_id": "tooluse_A", "content": "15C"},
        {"role": "tool", "tool_call_id": "tooluse_B", "content": "10:00"},
        {"role": "user", "content": "thanks"},
    ])
    assert r.status == 200, r
    msgs = sent(fake).json()["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert [list(b) for b in msgs[1]["content"]] == [["toolUse"], ["toolUse"]]
    assert msgs[2]["content"] == [
        {"toolResult": {"toolUseId": "tooluse_A", "content": [{"text": "15C"}]}},
        {"toolResult": {"toolUseId": "tooluse_B", "content": [{"text": "10:00"}]}},
        {"text": "thanks"}]


def test_upstream_validation_error_is_400_with_bedrock_message(gw, fake):
    # Converse wants the conversation to start with a user turn
    r = gw.chat("solo", messages=[{"role": "assistant", "content": "I start"},
                                  {"role": "user", "content": "hi"}])
    assert r.status == 400, r
    assert converse_posts(fake)[-1].wire_error.startswith("A conversation must start with a user message")
    assert "must start with a user message" in r.json()["error"]["message"]


# ----------------------------------------------- Anthropic clients ----

ANTH_BODY = {"model": "claude", "max_tokens": 256, "system": "terse",
             "messages": [{"role": "user", "content": "hi"}]}


def test_anthropic_client_nonstream_and_stream(gw, fake):
    fake.script(Behavior(content="Bonjour", prompt_tokens=12, completion_tokens=3))
    r = gw.post("/v1/messages", json_body=ANTH_BODY)
    assert r.status == 200, r
    assert sent(fake).json() == {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                                 "system": [{"text": "terse"}], "inferenceConfig": {"maxTokens": 256}}
    j = r.json()
    assert j["type"] == "message" and j["model"] == "claude"
    assert j["content"] == [{"type": "text", "text": "Bonjour"}]
    assert j["stop_reason"] == "end_turn"
    assert j["usage"]["input_tokens"] == 12 and j["usage"]["output_tokens"] == 3

    fake.script(Behavior(tool_calls=[{"id": "tooluse_Z", "name": "f", "arguments": "{\"q\":1}"}]))
    r, events, _ = gw.stream(dict(ANTH_BODY, stream=True, tools=[{"name": "f", "input_schema": {"type": "object"}}]),
                             path="/v1/messages")
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
    assert start[0]["type"] == "tool_use" and start[0]["id"] == "tooluse_Z" and start[0]["name"] == "f"
    args = "".join(d["delta"]["partial_json"] for n, d in evs
                   if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta")
    assert json.loads(args) == {"q": 1}
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use"


# ------------------------------------------------------ credentials ----

def test_session_token_is_sent_and_signed(gw, fake):
    r = gw.chat("sts")
    assert r.status == 200, r
    up = sent(fake)
    assert up.aws_akid == STS_AKID
    assert up.header("x-amz-security-token") == STS_TOKEN
    assert "SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token," in up.header("authorization")


def test_wrong_secret_is_refused_by_bedrock_and_502(gw, fake):
    fake.aws_keys = {AKID: "not-the-secret-the-gateway-has"}
    r = gw.chat("solo")
    assert r.status == 502, r
    up = converse_posts(fake)[-1]
    assert up.wire_error.startswith("signature mismatch")
    assert up.sent_status == 403
    assert "credentials" in r.json()["error"]["message"]


def test_wrong_session_token_is_refused(gw, fake):
    fake.aws_tokens = {STS_AKID: "another-token"}
    r = gw.chat("sts")
    assert r.status == 502, r
    assert converse_posts(fake)[-1].wire_error.startswith("x-amz-security-token")


def test_credentials_from_environment(make_gateway, fake):
    fake.aws_keys = {"AKIAFROMENVIRONMENT1": "env-secret"}
    fake.aws_tokens = {"AKIAFROMENVIRONMENT1": "env-token"}
    p = {"name": "br", "type": "bedrock", "url": fake.url, "region": "us-east-1"}
    env = dict(NO_AWS_ENV, AWS_ACCESS_KEY_ID="AKIAFROMENVIRONMENT1", AWS_SECRET_ACCESS_KEY="env-secret",
               AWS_SESSION_TOKEN="env-token")
    gw = make_gateway(base_config(free_port(), [p], [{"name": "m", "provider": "br", "upstream_model": LLAMA}]),
                      env=env)
    r = gw.chat("m")
    assert r.status == 200, r
    assert sent(fake).aws_akid == "AKIAFROMENVIRONMENT1"


def test_credentials_from_shared_file_profile(make_gateway, fake, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = AKIADEFAULTPROFILE01\naws_secret_access_key = d\n\n"
                     "[team]\naws_access_key_id = AKIATEAMPROFILE00001\naws_secret_access_key = team/secret\n")
    fake.aws_keys = {"AKIADEFAULTPROFILE01": "d", "AKIATEAMPROFILE00001": "team/secret"}
    provs = [{"name": "dflt", "type": "bedrock", "url": fake.url, "region": "us-east-1"},
             {"name": "team", "type": "bedrock", "url": fake.url, "region": "us-east-1", "profile": "team"}]
    models = [{"name": "d", "provider": "dflt", "upstream_model": LLAMA},
              {"name": "t", "provider": "team", "upstream_model": LLAMA}]
    env = dict(NO_AWS_ENV, AWS_SHARED_CREDENTIALS_FILE=str(creds))
    gw = make_gateway(base_config(free_port(), provs, models), env=env)
    assert gw.chat("d").status == 200
    assert sent(fake).aws_akid == "AKIADEFAULTPROFILE01"
    assert gw.chat("t").status == 200
    assert sent(fake).aws_akid == "AKIATEAMPROFILE00001"
    # no credentials anywhere: the attempt cannot be built, nothing is sent
    os.unlink(str(creds))
    n = len(converse_posts(fake))
    time.sleep(1.1)  # the file is stat()ed again at most once a second
    r = gw.chat("t")
    assert r.status in (502, 503), r
    assert len(converse_posts(fake)) == n


# --------------------------------------------------------- failures ----

def test_429_fails_over_to_fallback(gw, fake):
    fake.script(Behavior(status=429, retry_after=7), Behavior(content="from sonnet"))
    r = gw.chat("claude")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "from sonnet"
    assert [fw.model_of(q) for q in converse_posts(fake)] == [HAIKU, SONNET]
    assert converse_posts(fake)[0].sent_status == 429
    assert r.header("x-umbra-model") == "claude-b"


def test_429_without_fallback_passed_on(gw, fake):
    fake.script(Behavior(status=429, retry_after=7))
    r = gw.chat("solo")
    assert r.status == 429, r
    assert r.header("retry-after") == "7"


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_502(gw, fake, status):
    fake.script(Behavior(status=status))
    r = gw.chat("solo")
    assert r.status == 502, r
    assert r.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize("stream", [False, True])
def test_garbage_is_502(gw, fake, stream):
    if stream:
        # a message whose CRC does not match: the decoder refuses it
        ev = bytearray(fw.event("messageStart", {"role": "assistant"}))
        ev[-1] ^= 0xff
        fake.script(Behavior(sse_raw=[bytes(ev)]))
        r, _, _ = chat_stream(gw, "solo")
    else:
        fake.script(Behavior(garbage=True))
        r = gw.chat("solo")
    assert r.status == 502, r


def test_stream_that_is_not_an_event_stream_is_502(gw, fake):
    fake.script(Behavior(sse_raw=[b"data: {\"this\": \"is SSE, not an AWS event stream\"}\n\n"]))
    r, _, _ = chat_stream(gw, "solo")
    assert r.status == 502, r


def test_exception_before_any_event_is_502(gw, fake):
    fake.script(Behavior(sse_raw=[fw.exception("serviceUnavailableException", "Bedrock is unable to process your request.")]))
    r, _, _ = chat_stream(gw, "solo")
    assert r.status == 502, r


def test_exception_mid_stream_ends_with_an_error_event(gw, fake):
    fake.bedrock_exception_after = (2, "throttlingException", "Too many tokens, please wait before trying again.")
    fake.script(Behavior(content="a b c d e f"))
    r, events, _ = chat_stream(gw, "solo")
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data
    assert "error" in data[-1], data[-1]
    assert stream_text(data) == "a b"


def test_disconnect_mid_stream_openai_client(gw, fake):
    fake.script(Behavior(content="a b c d e f", disconnect_after=2))
    r, events, _ = chat_stream(gw, "solo")
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data
    assert "error" in data[-1], data[-1]
    assert stream_text(data) == "a b"


def test_disconnect_mid_stream_anthropic_client(gw, fake):
    fake.script(Behavior(content="a b c d e f", disconnect_after=2))
    r, events, _ = gw.stream(dict(ANTH_BODY, model="solo", stream=True), path="/v1/messages")
    assert r.status == 200, r
    names = [l[6:].strip() for _, raw in events for l in raw.decode().splitlines() if l.startswith("event:")]
    assert names[-1] == "error" and "message_stop" not in names


def test_stream_cut_without_metadata(gw, fake):
    """The upstream ends the body cleanly after messageStop but never sends
    metadata: the stream was cut short, the client is told (no [DONE])."""
    b = Behavior(content="a b")
    evs = [ev for kind, ev in fw.stream_events(b) if kind != "metadata"]
    fake.script(Behavior(sse_raw=evs, sse_interval=0))
    r, events, _ = chat_stream(gw, "solo")
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data and "error" in data[-1], data
    assert stream_text(data) == "a b"
