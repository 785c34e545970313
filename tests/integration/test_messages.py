"""POST /v1/messages — the Anthropic dialect served by an OpenAI-format upstream.

The gateway translates the Anthropic request into the canonical form and then
into an OpenAI body (checked here as the fake received it), and the OpenAI
answer, stream and errors back into Anthropic's shapes."""

import json

import httpc
from conftest import Behavior, base_config, free_port, provider

MSG = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
WEATHER_TOOL = {"name": "get_weather", "description": "Weather now",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}


def post(gw, body, **kw):
    return gw.post("/v1/messages", json_body=body, **kw)


def events(gw, body):
    r, evs, _ = gw.stream(dict(body, stream=True), path="/v1/messages")
    assert r.status == 200, r
    names = []
    for _, raw in evs:
        for line in raw.split(b"\n"):
            if line.startswith(b"event: "):
                names.append(line[7:].decode())
    return names, httpc.sse_data(evs)


def test_nonstream_is_anthropic_shaped(gateway, fake):
    r = post(gateway, dict(MSG, system="Be terse.", temperature=0.2, stop_sequences=["END"]))
    assert r.status == 200, r
    j = r.json()
    assert j["type"] == "message" and j["role"] == "assistant"
    assert j["content"] == [{"type": "text", "text": "Hello from the fake upstream."}]
    assert j["stop_reason"] == "end_turn" and j["model"] == "m"
    assert j["usage"]["input_tokens"] == 11 and j["usage"]["output_tokens"] == 7
    sent = fake.chats()[0].json()
    assert sent["messages"] == [{"role": "system", "content": "Be terse."},
                                {"role": "user", "content": "hi"}]
    assert sent["max_tokens"] == 100 and sent["temperature"] == 0.2 and sent["stop"] == ["END"]
    assert r.header("x-umbra-model") == "m"


def test_stream_event_order_and_usage(gateway, fake):
    fake.default = Behavior(content="one two three", prompt_tokens=21, completion_tokens=3)
    names, data = events(gateway, MSG)
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert names[1] == "content_block_start" and "content_block_stop" in names
    assert names[-2] == "message_delta"
    text = "".join(d["delta"]["text"] for d in data if d["type"] == "content_block_delta")
    assert text == "one two three"
    delta = [d for d in data if d["type"] == "message_delta"][0]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 3
    # the upstream was asked for usage (the client's dialect has it always)
    assert fake.chats()[0].json()["stream_options"] == {"include_usage": True}


def test_tool_round_trip(gateway, fake):
    fake.default = Behavior(tool_calls=[
        {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"id": "call_2", "name": "get_weather", "arguments": '{"city":"Oslo"}'}])
    r = post(gateway, dict(MSG, tools=[WEATHER_TOOL], tool_choice={"type": "any"}))
    assert r.status == 200, r
    j = r.json()
    assert j["stop_reason"] == "tool_use"
    assert [b["type"] for b in j["content"]] == ["tool_use", "tool_use"]
    assert j["content"][0] == {"type": "tool_use", "id": "call_1", "name": "get_weather",
                               "input": {"city": "Paris"}}
    sent = fake.chats()[0].json()
    assert sent["tool_choice"] == "required"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]

    # the client answers both calls in one user turn: the upstream must get
    # role "tool" messages with the ids, never the results as user text
    fake.default = Behavior(content="Paris 18C, Oslo 5C")
    follow = dict(MSG, tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": j["content"]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "5C"}],
             "is_error": False},
            {"type": "text", "text": "Summarise."}]}])
    r = post(gateway, follow)
    assert r.status == 200, r
    msgs = fake.chats()[1].json()["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool", "user"]
    assert msgs[1]["tool_calls"][1]["id"] == "call_2"
    assert json.loads(msgs[1]["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_1", "content": "18C"}
    assert msgs[3] == {"role": "tool", "tool_call_id": "call_2", "content": "5C"}
    assert msgs[4]["content"] == "Summarise."


def test_streamed_tool_calls_become_tool_use_blocks(gateway, fake):
    fake.default = Behavior(tool_calls=[
        {"id": "call_a", "name": "get_weather", "arguments": '{"city":"Rome"}'},
        {"id": "call_b", "name": "get_time", "arguments": '{"tz":"CET"}'}])
    names, data = events(gateway, dict(MSG, tools=[WEATHER_TOOL]))
    starts = [d for d in data if d["type"] == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["tool_use", "tool_use"]
    assert [s["content_block"]["id"] for s in starts] == ["call_a", "call_b"]
    args = {}
    for d in data:
        if d["type"] == "content_block_delta":
            assert d["delta"]["type"] == "input_json_delta"
            args[d["index"]] = args.get(d["index"], "") + d["delta"]["partial_json"]
    assert [json.loads(args[s["index"]]) for s in starts] == [{"city": "Rome"}, {"tz": "CET"}]
    assert [d for d in data if d["type"] == "message_delta"][0]["delta"]["stop_reason"] == "tool_use"


def test_errors_in_anthropic_shape(gateway, fake):
    def err(r, status, etype):
        assert r.status == status, r
        j = r.json()
        assert j["type"] == "error" and j["error"]["type"] == etype, j
        assert j["error"]["message"]
        return j["error"]["message"]

    err(gateway.post("/v1/messages", body=b'{"model": "m", ', headers={"Content-Type": "application/json"}),
        400, "invalid_request_error")
    assert "max_tokens" in err(post(gateway, {"model": "m", "messages": [{"role": "user", "content": "x"}]}),
                               400, "invalid_request_error")
    err(post(gateway, dict(MSG, messages=[{"role": "user", "content": [{"type": "nope"}]}])),
        400, "invalid_request_error")
    err(post(gateway, dict(MSG, model="nope")), 404, "not_found_error")
    fake.script(Behavior(status=429, retry_after=7))
    r = post(gateway, MSG)
    err(r, 429, "rate_limit_error")
    assert r.header("retry-after") == "7"
    fake.script(Behavior(status=500))
    err(post(gateway, MSG), 502, "api_error")
    fake.script(Behavior(garbage=True))
    err(post(gateway, MSG), 502, "api_error")
    # the gateway keeps serving
    assert post(gateway, MSG).status == 200


def test_mid_stream_disconnect_is_an_error_event(gateway, fake):
    fake.default = Behavior(content="a b c d e f", disconnect_after=2)
    r, evs, _ = gateway.stream(dict(MSG, stream=True), path="/v1/messages")
    assert r.status == 200
    raw = b"".join(e for _, e in evs)
    assert b"event: error" in raw and b"message_stop" not in raw
    last = httpc.sse_data(evs)[-1]
    assert last["type"] == "error" and last["error"]["type"] == "api_error"


def test_auth_errors_and_x_api_key(make_gateway, fake, tmp_path):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p"}],
                                  auth={"mode": "keys"}, store="sqlite://u.db",
                                  teams=[{"name": "t", "models": ["*"]}],
                                  identities=[{"name": "alice", "team": "t"}]))
    r = post(gw, MSG)
    assert r.status == 401 and r.json()["error"]["type"] == "authentication_error", r
    pki = str(tmp_path / "pki")
    gw.cli("pki", "init", "--dir", pki)
    gw.cli("pki", "issue", "alice", "--kind", "client", "--team", "t", "--dir", pki)
    key = gw.cli("key", "create", "--identity", "alice").strip().splitlines()[-1]
    r = post(gw, MSG, headers={"x-api-key": key, "anthropic-version": "2023-06-01"})
    assert r.status == 200, r
    # the client's key never goes upstream
    up = fake.chats()[-1]
    assert key not in up.raw_head.decode("latin-1")


def test_audit_and_usage_name_the_dialect(make_gateway, fake, tmp_path):
    port = free_port()
    gw = make_gateway(base_config(port, [provider("p", fake)], [{"name": "m", "provider": "p"}],
                                  audit={"path": str(tmp_path / "audit.jsonl")}))
    fake.default = Behavior(prompt_tokens=40, completion_tokens=9)
    assert post(gw, MSG).status == 200
    gw.stop()
    recs = [json.loads(line) for line in open(tmp_path / "audit.jsonl")]
    rec = [x for x in recs if x.get("dialect") == "anthropic"]
    assert rec and rec[0]["prompt_tokens"] == 40 and rec[0]["completion_tokens"] == 9, recs


def test_models_list_in_the_callers_shape(gateway):
    oa = gateway.get("/v1/models").json()
    assert oa["object"] == "list" and [m["id"] for m in oa["data"]] == ["m", "gpt"]
    an = gateway.get("/v1/models?limit=20", headers={"anthropic-version": "2023-06-01"}).json()
    assert [m["id"] for m in an["data"]] == ["m", "gpt"]
    assert an["data"][0]["type"] == "model" and an["has_more"] is False
    assert an["first_id"] == "m" and an["last_id"] == "gpt"
