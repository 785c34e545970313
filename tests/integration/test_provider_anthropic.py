"""The anthropic provider type against a fake Anthropic API (fakewire_anthropic.py):
OpenAI clients translated both ways, Anthropic clients passed through, tool calls
and their results round-tripping with ids intact, usage as the upstream counted it,
and upstream failures (429 failover, 5xx, garbage, a stream cut mid-way).

The fake checks what the gateway sent the way the real API does (x-api-key,
anthropic-version, body shape, alternating roles, tool_result pairing) and
records why it refused a request in req.wire_error."""

import json

import pytest

import httpc
from conftest import Behavior, base_config, free_port

KEY = "sk-ant-test-key"


def anthropic_provider(name, fake, **kw):
    p = {"name": name, "type": "anthropic", "url": fake.url, "api_key": KEY}
    p.update(kw)
    return p


@pytest.fixture
def gw(make_gateway, fake, make_fake):
    """claude → anthropic fake (upstream name claude-sonnet-4-5), falling back to
    claude-b on the same fake; gpt → an OpenAI fake, for Anthropic clients."""
    fake.expect_api_key = KEY
    oa = make_fake(name="openai")
    cfg = base_config(free_port(), [
        anthropic_provider("anth", fake),
        {"name": "oa", "type": "openai", "url": oa.url},
    ], [
        {"name": "claude", "provider": "anth", "upstream_model": "claude-sonnet-4-5",
         "fallbacks": ["claude-b"]},
        {"name": "claude-b", "provider": "anth", "upstream_model": "claude-haiku-4-5"},
        {"name": "solo", "provider": "anth", "upstream_model": "claude-opus-4-1"},
        {"name": "gpt", "provider": "oa", "upstream_model": "gpt-4o-mini"},
    ])
    g = make_gateway(cfg)
    g.oa = oa
    return g


def messages(fake):
    return fake.posts("/v1/messages")


def sent(fake, i=-1):
    """The i-th request the fake got, checked by it (no wire error)."""
    req = messages(fake)[i]
    assert getattr(req, "wire_error", None) is None, req.wire_error
    return req


def anthropic_events(events):
    """[(event name, data JSON)] of an Anthropic SSE stream."""
    out = []
    for _, raw in events:
        name, data = None, None
        for line in raw.decode().splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:].strip())
        if data is not None:
            out.append((name, data))
    return out


def request_log(gw, n=1):
    """The last chat request's log line (waits for the nth one)."""
    def chats():
        return [l for l in gw.request_logs() if l.get("method") == "POST"]
    assert gw.wait_log(lambda l: len(chats()) >= n) is not None
    return chats()[-1]


# ------------------------------------------------- OpenAI clients ----

def test_openai_client_nonstream(gw, fake):
    r = gw.chat("claude", messages=[{"role": "system", "content": "Be terse."},
                                    {"role": "user", "content": "hi"}], temperature=0.5)
    assert r.status == 200, r
    up = sent(fake)
    assert up.path == "/v1/messages"
    assert up.header("x-api-key") == KEY
    assert up.header("anthropic-version") == "2023-06-01"
    assert up.header("authorization") is None
    assert up.header("x-request-id") == r.header("x-request-id")
    body = up.json()
    assert body == {"model": "claude-sonnet-4-5", "max_tokens": 4096, "system": "Be terse.",
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                    "temperature": 0.5}
    j = r.json()
    assert j["object"] == "chat.completion"
    assert j["model"] == "claude"
    assert j["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    assert j["choices"][0]["finish_reason"] == "stop"
    assert j["usage"]["prompt_tokens"] == 11 and j["usage"]["completion_tokens"] == 7
    assert r.header("x-umbra-provider") == "anth"


def test_openai_client_stream_and_usage(gw, fake):
    fake.script(Behavior(content="one two three", prompt_tokens=100, completion_tokens=20,
                         cached_tokens=60))
    r, events, _ = gw.stream({"model": "claude", "messages": [{"role": "user", "content": "hi"}],
                              "stream": True, "stream_options": {"include_usage": True}})
    assert r.status == 200, r
    assert sent(fake).json()["stream"] is True
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    text = "".join(d["choices"][0]["delta"].get("content") or "" for d in data[:-1] if d.get("choices"))
    assert text == "one two three"
    finish = [d["choices"][0]["finish_reason"] for d in data[:-1] if d.get("choices")]
    assert finish[-1] == "stop"
    usage = [d["usage"] for d in data[:-1] if d.get("usage")]
    # prompt counts every input token, the ones read from the cache included
    assert usage[-1]["prompt_tokens"] == 100 and usage[-1]["completion_tokens"] == 20
    assert usage[-1].get("prompt_tokens_details", {}).get("cached_tokens") == 60
    log = request_log(gw)
    assert (log["prompt_tokens"], log["completion_tokens"]) == (100, 20)


def test_tool_call_round_trip_ids_preserved(gw, fake):
    fake.script(Behavior(tool_calls=[{"id": "toolu_01A09q90qw90lq917835", "name": "get_weather",
                                      "arguments": "{\"city\": \"Paris\"}"}]))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "weather",
                                               "parameters": {"type": "object", "properties": {
                                                   "city": {"type": "string"}}}}}]
    r = gw.chat("claude", messages=[{"role": "user", "content": "Weather in Paris?"}], tools=tools)
    assert r.status == 200, r
    body = sent(fake).json()
    assert body["tools"] == [{"name": "get_weather", "description": "weather",
                              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    msg = r.json()["choices"][0]["message"]
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"
    call = msg["tool_calls"][0]
    assert call["id"] == "toolu_01A09q90qw90lq917835" and call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}

    # the client answers the call: the fake sees the native blocks, ids intact
    r = gw.chat("claude", tools=tools, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "15 degrees"},
    ])
    assert r.status == 200, r
    got = sent(fake).json()["messages"]
    assert got == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835",
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835",
                                      "content": "15 degrees"}]},
    ]


def test_parallel_tool_calls_stream_and_results(gw, fake):
    calls = [{"id": "toolu_A", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
             {"id": "toolu_B", "name": "get_time", "arguments": "{\"tz\":\"CET\"}"}]
    fake.script(Behavior(tool_calls=calls))
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
             for n in ("get_weather", "get_time")]
    r, events, _ = gw.stream({"model": "claude", "stream": True, "tools": tools,
                              "messages": [{"role": "user", "content": "both"}]})
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    got = {}
    for d in data[:-1]:
        for tc in (d["choices"][0]["delta"].get("tool_calls") or []) if d.get("choices") else []:
            slot = got.setdefault(tc["index"], {"id": None, "name": None, "args": ""})
            if tc.get("id"):
                slot["id"] = tc["id"]
                slot["name"] = tc["function"]["name"]
            slot["args"] += tc["function"].get("arguments") or ""
    assert [(got[i]["id"], got[i]["name"], json.loads(got[i]["args"])) for i in sorted(got)] == [
        ("toolu_A", "get_weather", {"city": "Paris"}), ("toolu_B", "get_time", {"tz": "CET"})]
    assert [d["choices"][0]["finish_reason"] for d in data[:-1] if d.get("choices")][-1] == "tool_calls"

    # both results, as two `tool` messages, arrive in ONE user turn
    r = gw.chat("claude", tools=tools, messages=[
        {"role": "user", "content": "both"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": got[i]["id"], "type": "function",
             "function": {"name": got[i]["name"], "arguments": got[i]["args"]}} for i in sorted(got)]},
        {"role": "tool", "tool_call_id": "toolu_A", "content": "15C"},
        {"role": "tool", "tool_call_id": "toolu_B", "content": "10:00"},
        {"role": "user", "content": "thanks"},
    ])
    assert r.status == 200, r
    msgs = sent(fake).json()["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
    assert [b["type"] for b in msgs[1]["content"]] == ["tool_use", "tool_use"]
    assert msgs[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_A", "content": "15C"},
        {"type": "tool_result", "tool_use_id": "toolu_B", "content": "10:00"},
        {"type": "text", "text": "thanks"}]


# ----------------------------------------------- Anthropic clients ----

ANTH_BODY = {"model": "claude", "max_tokens": 256, "system": "terse",
             "thinking": {"type": "enabled", "budget_tokens": 1024},
             "messages": [{"role": "user", "content": "hi"}]}


def test_anthropic_client_passes_through(gw, fake):
    raw = json.dumps(ANTH_BODY).encode()
    r = gw.post("/v1/messages", body=raw, headers={"Content-Type": "application/json",
                                                   "anthropic-version": "2023-06-01"})
    assert r.status == 200, r
    up = sent(fake)
    # the client's bytes with only the model replaced (thinking kept)
    assert up.body == raw.replace(b'"model": "claude"', b'"model": "claude-sonnet-4-5"')
    assert up.header("x-api-key") == KEY
    # the answer is the upstream's, byte for byte
    assert r.body == up.sent_body
    assert r.json()["type"] == "message"
    log = request_log(gw)
    assert (log["prompt_tokens"], log["completion_tokens"]) == (11, 7)


def test_anthropic_beta_header_reaches_anthropic_only(gw, fake):
    beta = "prompt-caching-2024-07-31,context-1m-2025-08-07"
    r = gw.post("/v1/messages", json_body=ANTH_BODY, headers={"anthropic-beta": beta})
    assert r.status == 200, r
    assert sent(fake).header("anthropic-beta") == beta
    # an OpenAI-format upstream never sees it; nor does an OpenAI client's request carry it
    r = gw.post("/v1/messages", json_body=dict(ANTH_BODY, model="gpt"), headers={"anthropic-beta": beta})
    assert r.status == 200, r
    assert gw.oa.chats()[-1].header("anthropic-beta") is None
    r = gw.chat("claude", headers={"anthropic-beta": beta})
    assert r.status == 200, r
    assert sent(fake).header("anthropic-beta") is None


def test_anthropic_client_stream_passes_through(gw, fake):
    fake.script(Behavior(content="a b", cached_tokens=5, prompt_tokens=50, completion_tokens=9))
    r, events, _ = gw.stream(dict(ANTH_BODY, stream=True), path="/v1/messages")
    assert r.status == 200, r
    assert r.header("content-type", "").startswith("text/event-stream")
    assert [ev for _, ev in events] == sent(fake).sent_events
    log = request_log(gw)
    assert (log["prompt_tokens"], log["completion_tokens"]) == (50, 9)


def test_anthropic_client_tool_round_trip_passes_through(gw, fake):
    fake.script(Behavior(tool_calls=[{"id": "toolu_X1", "name": "f", "arguments": "{\"a\":1}"},
                                     {"id": "toolu_X2", "name": "f", "arguments": "{\"a\":2}"}]))
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    body = dict(ANTH_BODY, tools=tools)
    r = gw.post("/v1/messages", json_body=body)
    assert r.status == 200, r
    content = r.json()["content"]
    assert [(b["id"], b["input"]) for b in content] == [("toolu_X1", {"a": 1}), ("toolu_X2", {"a": 2})]
    body["messages"] = body["messages"] + [
        {"role": "assistant", "content": content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_X1", "content": "1"},
                                     {"type": "tool_result", "tool_use_id": "toolu_X2", "content": "2",
                                      "is_error": True}]}]
    r = gw.post("/v1/messages", json_body=body)
    assert r.status == 200, r
    assert sent(fake).json()["messages"] == body["messages"]


def test_anthropic_client_via_openai_upstream(gw, fake):
    """An Anthropic client on an OpenAI-type model: the Messages answer and
    events are written by the gateway (anthropic_fmt's encoders)."""
    gw.oa.script(Behavior(content="Hi there", prompt_tokens=12, completion_tokens=3))
    r = gw.post("/v1/messages", json_body=dict(ANTH_BODY, model="gpt"))
    assert r.status == 200, r
    j = r.json()
    assert j["type"] == "message" and j["role"] == "assistant" and j["id"].startswith("msg_")
    assert j["model"] == "gpt"
    assert j["content"] == [{"type": "text", "text": "Hi there"}]
    assert j["stop_reason"] == "end_turn" and j["stop_sequence"] is None
    assert j["usage"]["input_tokens"] == 12 and j["usage"]["output_tokens"] == 3
    assert gw.oa.chats()[-1].json()["model"] == "gpt-4o-mini"

    gw.oa.script(Behavior(content="x y z", prompt_tokens=12, completion_tokens=3))
    r, events, _ = gw.stream(dict(ANTH_BODY, model="gpt", stream=True), path="/v1/messages")
    assert r.status == 200, r
    evs = anthropic_events(events)
    names = [n for n, _ in evs]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == 1 and names.count("content_block_stop") == 1
    assert all(n == d["type"] for n, d in evs)
    text = "".join(d["delta"]["text"] for n, d in evs if n == "content_block_delta")
    assert text == "x y z"
    delta = evs[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 3 and delta["usage"]["input_tokens"] == 12


def test_anthropic_client_tool_calls_via_openai_stream(gw, fake):
    gw.oa.script(Behavior(tool_calls=[{"id": "call_1", "name": "f", "arguments": "{\"q\":\"a\"}"},
                                      {"id": "call_2", "name": "g", "arguments": "{}"}]))
    body = dict(ANTH_BODY, model="gpt", stream=True,
                tools=[{"name": "f", "input_schema": {"type": "object"}},
                       {"name": "g", "input_schema": {"type": "object"}}])
    r, events, _ = gw.stream(body, path="/v1/messages")
    assert r.status == 200, r
    evs = anthropic_events(events)
    blocks = {}
    for n, d in evs:
        if n == "content_block_start":
            blocks[d["index"]] = dict(d["content_block"], args="")
        elif n == "content_block_delta" and d["delta"]["type"] == "input_json_delta":
            blocks[d["index"]]["args"] += d["delta"]["partial_json"]
    tools = [b for b in blocks.values() if b["type"] == "tool_use"]
    assert [(b["id"], b["name"], json.loads(b["args"] or "{}")) for b in tools] == [
        ("call_1", "f", {"q": "a"}), ("call_2", "g", {})]
    assert evs[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_client_bad_request_named(gw, fake):
    r = gw.post("/v1/messages", json_body={"model": "claude", "messages": [{"role": "user", "content": "x"}]})
    assert r.status == 400, r
    j = r.json()
    assert j["type"] == "error" and j["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in j["error"]["message"]
    assert messages(fake) == []


# --------------------------------------------------------- failures ----

def test_429_fails_over_to_fallback(gw, fake):
    fake.script(Behavior(status=429, retry_after=7), Behavior(content="from b"))
    r = gw.chat("claude")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "from b"
    models = [q.json()["model"] for q in messages(fake)]
    assert models == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert r.header("x-umbra-model") == "claude-b"


def test_429_without_fallback_passed_on(gw, fake):
    fake.script(Behavior(status=429, retry_after=7))
    r = gw.chat("solo")
    assert r.status == 429, r
    assert r.header("retry-after") == "7"
    assert "per-minute rate limit" in r.json()["error"]["message"]
    # an Anthropic client gets Anthropic's shape
    fake.script(Behavior(status=429, retry_after=3))
    r = gw.post("/v1/messages", json_body=dict(ANTH_BODY, model="solo"))
    assert r.status == 429 and r.header("retry-after") == "3"
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize("status", [500, 529])
def test_5xx_is_502(gw, fake, status):
    fake.script(Behavior(status=status))
    r = gw.chat("solo")
    assert r.status == 502, r
    assert r.json()["error"]["type"] == "api_error"


def test_wrong_key_is_refused_and_502(gw, fake):
    fake.expect_api_key = "another-key"
    r = gw.chat("solo")
    assert r.status == 502, r
    assert messages(fake)[-1].wire_error == "invalid x-api-key"


@pytest.mark.parametrize("stream", [False, True])
def test_garbage_is_502(gw, fake, stream):
    if stream:
        fake.script(Behavior(sse_raw=[b"event: message_start\ndata: {not json\n\n"]))
    else:
        fake.script(Behavior(garbage=True))
    body = {"model": "solo", "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        r, events, _ = gw.stream(dict(body, stream=True))
    else:
        r = gw.post("/v1/chat/completions", json_body=body)
    assert r.status == 502, r


def test_stream_error_event_before_content_is_502(gw, fake):
    fake.script(Behavior(sse_raw=[
        b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"]))
    r, _, _ = gw.stream({"model": "solo", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status == 502, r


def test_disconnect_mid_stream_openai_client(gw, fake):
    fake.script(Behavior(content="a b c d e f", disconnect_after=2))
    r, events, _ = gw.stream({"model": "solo", "stream": True,
                              "messages": [{"role": "user", "content": "hi"}]})
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data
    assert "error" in data[-1], data[-1]
    text = "".join(d["choices"][0]["delta"].get("content") or "" for d in data if d.get("choices"))
    assert text == "a b"


def test_disconnect_mid_stream_anthropic_client(gw, fake):
    fake.script(Behavior(content="a b c d e f", disconnect_after=2))
    r, events, _ = gw.stream(dict(ANTH_BODY, model="solo", stream=True), path="/v1/messages")
    assert r.status == 200, r
    evs = anthropic_events(events)
    assert evs[-1][0] == "error" and evs[-1][1]["type"] == "error"
    assert "message_stop" not in [n for n, _ in evs]


def test_stream_cut_without_message_stop_openai_client(gw, fake):
    """The upstream closes cleanly but never sent message_stop: the stream
    was cut short, and the client is told so (no [DONE])."""
    fake.script(Behavior(sse_raw=[
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","content":[],"model":"m","usage":{"input_tokens":3,"output_tokens":1}}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n',
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"partial"}}\n\n']))
    r, events, _ = gw.stream({"model": "solo", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data
    assert "error" in data[-1], data
    assert any(d.get("choices") and d["choices"][0]["delta"].get("content") == "partial" for d in data[:-1])


def test_stream_cut_without_message_stop_anthropic_client(gw, fake):
    fake.script(Behavior(sse_raw=[
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        b'"role":"assistant","content":[],"model":"m","usage":{"input_tokens":3,"output_tokens":1}}}\n\n']))
    r, events, _ = gw.stream(dict(ANTH_BODY, model="solo", stream=True), path="/v1/messages")
    assert r.status == 200, r
    assert anthropic_events(events)[-1][0] == "error"
