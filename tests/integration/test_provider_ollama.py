"""The ollama provider type: the real gateway against fakewire_ollama.py, a fake
that answers like Ollama's native API (POST /api/chat JSON or NDJSON, POST
/api/embed) and refuses (req.wire_error) any request Ollama would misread.

Every request goes through translation (Ollama's wire format is nobody's client
dialect): OpenAI and Anthropic clients, non-stream and stream, tool calls both
ways with the ids the gateway made up for Ollama's id-less calls, usage from
prompt_eval_count / eval_count, embeddings, and the failure rules."""

import json
import time

import httpc
from conftest import Behavior, base_config, chat_body, free_port, provider

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather now",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CALLS = [{"id": "ignored_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
         {"id": "ignored_2", "name": "get_weather", "arguments": '{"city":"Oslo"}'}]


def ollama(name, fake, **kw):
    p = {"name": name, "type": "ollama", "url": fake.url}
    p.update(kw)
    return p


def gw_for(make_gateway, fake, backup=None, **prov):
    """Model "llama" on an ollama provider (upstream name llama3.2); with a
    backup fake, model "backup" on an openai provider as its fallback."""
    provs = [ollama("ol", fake, **prov)]
    llama = {"name": "llama", "provider": "ol", "upstream_model": "llama3.2"}
    models = [llama, {"name": "qwen", "provider": "ol", "upstream_model": "qwen3:8b"}]
    if backup is not None:
        provs.append(provider("oa", backup))
        models.append({"name": "backup", "provider": "oa"})
        llama["fallbacks"] = ["backup"]
    return make_gateway(base_config(free_port(), provs, models))


def chats(fake):
    return fake.posts("/api/chat")


def ok(req):
    """The fake found nothing wrong with what the gateway sent."""
    assert getattr(req, "wire_error", None) is None, req.wire_error
    return req.json()


def request_log(gw, rid):
    line = gw.wait_log(lambda l: l.get("msg") == "request" and l.get("id") == rid)
    assert line, gw.tail(20)
    return line


# ---------------------------------------------------------------- chat ----

def test_nonstream_chat_request_and_answer(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.default = Behavior(content="Rayleigh scattering.", prompt_tokens=26, completion_tokens=298)
    r = gw.chat("llama", messages=[{"role": "system", "content": "Be terse."},
                                   {"role": "user", "content": "Why is the sky blue?"}],
                max_tokens=64, temperature=0.7, top_p=0.9, stop=["\n\n", "END"],
                headers={"x-request-id": "ol-ns-1"})
    assert r.status == 200, r
    up = chats(fake)[0]
    sent = ok(up)
    assert up.path == "/api/chat" and up.target == "/api/chat"
    assert sent == {"model": "llama3.2", "stream": False,
                    "messages": [{"role": "system", "content": "Be terse."},
                                 {"role": "user", "content": "Why is the sky blue?"}],
                    "options": {"num_predict": 64, "temperature": 0.7, "top_p": 0.9, "stop": ["\n\n", "END"]}}
    assert up.header("content-type") == "application/json"
    assert up.header("x-request-id") == "ol-ns-1"
    assert up.header("authorization") is None  # no key configured, the client's never forwarded
    j = r.json()
    assert j["object"] == "chat.completion" and j["model"] == "llama"
    assert j["choices"][0]["message"] == {"role": "assistant", "content": "Rayleigh scattering."}
    assert j["choices"][0]["finish_reason"] == "stop"
    assert j["usage"] == {"prompt_tokens": 26, "completion_tokens": 298, "total_tokens": 324}
    assert r.header("x-umbra-provider") == "ol" and r.header("x-umbra-model") == "llama"
    log = request_log(gw, "ol-ns-1")
    assert (log["prompt_tokens"], log["completion_tokens"], log["status"]) == (26, 298, 200)


def test_bearer_key_and_extra_headers(make_gateway, fake):
    fake.ollama_bearer = "proxy-secret"
    gw = gw_for(make_gateway, fake, api_key="proxy-secret", headers={"X-Tenant": "t1"})
    r = gw.chat("llama", headers={"Authorization": "Bearer client-key-never-forwarded"})
    assert r.status == 200, r
    up = chats(fake)[0]
    ok(up)
    assert up.header_all("authorization") == ["Bearer proxy-secret"]
    assert up.header("x-tenant") == "t1"


def test_done_reason_length(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    b = Behavior(content="The sky is")
    b.done_reason = "length"
    fake.script(b)
    r = gw.chat("llama", max_tokens=3)
    assert r.status == 200, r
    assert r.json()["choices"][0]["finish_reason"] == "length"


def test_stream_ndjson_to_sse(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.default = Behavior(content="café 😀 and more", prompt_tokens=21, completion_tokens=4)
    body = chat_body("llama", content="hi", stream=True, stream_options={"include_usage": True})
    r, events, _ = gw.stream(body, headers={"x-request-id": "ol-st-1"})
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/event-stream")
    up = chats(fake)[0]
    assert ok(up)["stream"] is True
    # what Ollama sent: one NDJSON line per word, the last with done:true
    lines = [json.loads(e) for e in up.sent_events]
    assert [l["done"] for l in lines] == [False] * 4 + [True]
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    chunks = data[:-1]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "café 😀 and more"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["stop"]
    usage = [c for c in chunks if c["choices"] == []]
    assert len(usage) == 1 and usage[0]["usage"] == {"prompt_tokens": 21, "completion_tokens": 4,
                                                      "total_tokens": 25}
    log = request_log(gw, "ol-st-1")
    assert (log["prompt_tokens"], log["completion_tokens"], log["stream"]) == (21, 4, True)


def test_stream_usage_counted_when_client_did_not_ask(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.default = Behavior(content="a b", prompt_tokens=5, completion_tokens=2)
    r, events, _ = gw.stream(chat_body("llama", stream=True), headers={"x-request-id": "ol-st-2"})
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]" and all(d["choices"] for d in data[:-1])  # no usage chunk
    log = request_log(gw, "ol-st-2")
    assert (log["prompt_tokens"], log["completion_tokens"]) == (5, 2)


# ---------------------------------------------------------- tool calls ----

def test_tool_round_trip_openai_client(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.script(Behavior(tool_calls=CALLS, prompt_tokens=40, completion_tokens=12))
    ask = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    r = gw.chat("llama", messages=ask, tools=[WEATHER])
    assert r.status == 200, r
    sent = ok(chats(fake)[0])
    assert sent["tools"] == [WEATHER]
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    ids = [c["id"] for c in calls]
    # Ollama sent no ids: the gateway made distinct ones (never Behavior's)
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids), ids
    assert not set(ids) & {"ignored_1", "ignored_2"}

    # the client runs the tools and sends the results back
    fake.script(Behavior(content="Paris 18C, Oslo 5C."))
    follow = ask + [choice["message"],
                    {"role": "tool", "tool_call_id": ids[0], "content": "18C"},
                    {"role": "tool", "tool_call_id": ids[1], "content": "5C"}]
    r = gw.chat("llama", messages=follow, tools=[WEATHER])
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "Paris 18C, Oslo 5C."
    msgs = ok(chats(fake)[1])["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "tool"]
    assert msgs[1]["tool_calls"] == [
        {"id": ids[0], "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"id": ids[1], "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]
    # results are role:tool messages naming the function and the call, never user text
    assert msgs[2] == {"role": "tool", "content": "18C", "tool_name": "get_weather", "tool_call_id": ids[0]}
    assert msgs[3] == {"role": "tool", "content": "5C", "tool_name": "get_weather", "tool_call_id": ids[1]}


def test_tool_ids_from_newer_ollama_are_kept(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    b = Behavior(tool_calls=[{"id": "call_x9", "name": "get_weather", "arguments": '{"city":"Rome"}'}])
    b.ollama_ids = True
    fake.script(b)
    r = gw.chat("llama", tools=[WEATHER])
    assert r.status == 200, r
    assert [c["id"] for c in r.json()["choices"][0]["message"]["tool_calls"]] == ["call_x9"]


def test_tool_round_trip_anthropic_client(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    tool = {"name": "get_weather", "description": "Weather now",
            "input_schema": WEATHER["function"]["parameters"]}
    msg = {"model": "llama", "max_tokens": 200, "tools": [tool], "system": "You are a weather bot.",
           "messages": [{"role": "user", "content": "Paris and Oslo?"}]}
    fake.script(Behavior(tool_calls=CALLS))
    r = gw.post("/v1/messages", json_body=msg)
    assert r.status == 200, r
    j = r.json()
    assert j["stop_reason"] == "tool_use"
    uses = [c for c in j["content"] if c["type"] == "tool_use"]
    assert [u["input"] for u in uses] == [{"city": "Paris"}, {"city": "Oslo"}]
    sent = ok(chats(fake)[0])
    assert sent["messages"][0] == {"role": "system", "content": "You are a weather bot."}
    assert sent["options"] == {"num_predict": 200}
    assert sent["tools"][0]["function"]["parameters"] == tool["input_schema"]

    fake.script(Behavior(content="Done."))
    follow = dict(msg, messages=msg["messages"] + [
        {"role": "assistant", "content": j["content"]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": uses[0]["id"], "content": "18C"},
            {"type": "tool_result", "tool_use_id": uses[1]["id"], "content": [{"type": "text", "text": "5C"}]},
            {"type": "text", "text": "Summarise."}]}])
    r = gw.post("/v1/messages", json_body=follow)
    assert r.status == 200, r
    assert r.json()["content"] == [{"type": "text", "text": "Done."}]
    msgs = ok(chats(fake)[1])["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert [c["id"] for c in msgs[2]["tool_calls"]] == [u["id"] for u in uses]
    assert msgs[3] == {"role": "tool", "content": "18C", "tool_name": "get_weather",
                       "tool_call_id": uses[0]["id"]}
    assert msgs[4]["content"] == "5C" and msgs[4]["tool_call_id"] == uses[1]["id"]
    assert msgs[5] == {"role": "user", "content": "Summarise."}


def test_parallel_tool_calls_streamed(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.default = Behavior(tool_calls=CALLS, prompt_tokens=30, completion_tokens=9)
    r, events, _ = gw.stream(chat_body("llama", stream=True, tools=[WEATHER],
                                       stream_options={"include_usage": True}))
    assert r.status == 200, r
    ok(chats(fake)[0])
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]"
    calls = {}
    for c in data[:-1]:
        if not c["choices"]:
            continue
        for tc in c["choices"][0]["delta"].get("tool_calls") or []:
            slot = calls.setdefault(tc["index"], {"id": None, "name": None, "args": ""})
            if tc.get("id"):
                slot["id"] = tc["id"]
            fn = tc.get("function") or {}
            if fn.get("name"):
                slot["name"] = fn["name"]
            slot["args"] += fn.get("arguments") or ""
    assert sorted(calls) == [0, 1]
    assert [json.loads(calls[i]["args"]) for i in (0, 1)] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert calls[0]["id"] != calls[1]["id"] and calls[0]["name"] == "get_weather"
    finish = [c["choices"][0]["finish_reason"] for c in data[:-1] if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["tool_calls"]
    assert [c["usage"] for c in data[:-1] if c["choices"] == []] == [
        {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39}]


# -------------------------------------------------------------- images ----

def test_base64_image_sent_as_images(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    r = gw.chat("llama", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + png}}]}])
    assert r.status == 200, r
    msgs = ok(chats(fake)[0])["messages"]
    assert msgs == [{"role": "user", "content": "What is this?", "images": [png]}]


def test_image_url_cannot_be_sent(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    r = gw.chat("llama", messages=[{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}])
    # Ollama takes base64 only: nothing reaches it, the client gets a 400 saying why
    assert r.status == 400, r
    err = json.loads(r.body)["error"]
    assert err["code"] == "unsupported_request" and "base64" in err["message"], err
    assert chats(fake) == []


# ---------------------------------------------------------- embeddings ----

def test_embeddings(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.default = Behavior(prompt_tokens=14)
    r = gw.post("/v1/embeddings", json_body={"model": "qwen", "input": ["café", "two"]},
                headers={"x-request-id": "ol-emb-1"})
    assert r.status == 200, r
    up = fake.posts("/api/embed")[0]
    assert ok(up) == {"model": "qwen3:8b", "input": ["café", "two"]}
    j = r.json()
    sent = json.loads(up.sent_body)
    assert j["object"] == "list"
    assert [(d["object"], d["index"]) for d in j["data"]] == [("embedding", 0), ("embedding", 1)]
    assert [d["embedding"] for d in j["data"]] == sent["embeddings"]
    assert j["usage"] == {"prompt_tokens": 14, "total_tokens": 14}
    assert request_log(gw, "ol-emb-1")["prompt_tokens"] == 14
    r = gw.post("/v1/embeddings", json_body={"model": "qwen", "input": "one"})
    assert r.status == 200 and len(r.json()["data"]) == 1
    assert ok(fake.posts("/api/embed")[1])["input"] == "one"


def test_token_array_embeddings_refused(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    r = gw.post("/v1/embeddings", json_body={"model": "qwen", "input": [[1, 2, 3]]})
    assert r.status >= 400, r
    assert fake.posts("/api/embed") == []


# -------------------------------------------------------------- errors ----

def test_model_not_found_relayed(make_gateway, fake):
    fake.ollama_models = {"other:latest"}
    gw = gw_for(make_gateway, fake)
    r = gw.chat("llama")
    assert r.status == 404, r
    err = r.json()["error"]
    assert err["type"] == "not_found_error"
    assert err["message"] == 'model "llama3.2" not found, try pulling it first'
    assert chats(fake)[0].wire_error


def test_429_fails_over_to_fallback(make_gateway, fake, make_fake):
    backup = make_fake(name="backup")
    gw = gw_for(make_gateway, fake, backup=backup)
    fake.default = Behavior(status=429, retry_after=7)
    backup.default = Behavior(content="from the backup")
    r = gw.chat("llama")
    assert r.status == 200, r
    assert r.json()["choices"][0]["message"]["content"] == "from the backup"
    assert len(chats(fake)) >= 1 and len(backup.chats()) == 1
    assert backup.chats()[0].json()["model"] == "backup"
    # without a fallback the 429 and its retry-after reach the client
    r = gw.chat("qwen")
    assert r.status == 429 and r.header("retry-after") == "7", r
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_5xx_and_garbage_are_502(make_gateway, fake):
    gw = gw_for(make_gateway, fake, max_attempts=1, ejection={"consecutive_failures": 1000})
    fake.script(Behavior(status=500))
    r = gw.chat("llama")
    assert r.status == 502 and r.json()["error"]["type"] == "api_error", r
    fake.script(Behavior(garbage=True))
    assert gw.chat("llama").status == 502
    # well-formed JSON that is not an Ollama answer is garbage too
    fake.script(Behavior(body=b'{"choices":[]}'))
    assert gw.chat("llama").status == 502
    fake.script(Behavior(garbage=True))
    r, _, _ = gw.stream(chat_body("llama", stream=True))
    assert r.status == 502, r
    # and the gateway keeps serving
    assert gw.chat("llama").status == 200


def test_midstream_disconnect(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.default = Behavior(content="one two three four five", disconnect_after=2)
    r, events, _ = gw.stream(chat_body("llama", stream=True))
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data
    assert "error" in data[-1], data[-1]
    text = "".join(d["choices"][0]["delta"].get("content") or "" for d in data[:-1] if d.get("choices"))
    assert text == "one two"


def test_midstream_error_line_and_garbage_line(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    first = b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.1Z","message":{"role":"assistant","content":"Hi"},"done":false}\n'
    for bad in (b'{"error":"an error was encountered while running the model: CUDA error"}\n',
                b'<html>502</html>\n'):
        fake.script(Behavior(sse_raw=[first, bad], sse_interval=0.01))
        r, events, _ = gw.stream(chat_body("llama", stream=True))
        assert r.status == 200, r
        data = httpc.sse_data(events)
        assert "[DONE]" not in data
        assert data[-1]["error"]["type"] == "api_error", data[-1]
        assert any(d.get("choices") and d["choices"][0]["delta"].get("content") == "Hi" for d in data)


def test_stream_without_done_line_is_cut_short(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    line = b'{"model":"llama3.2","created_at":"2025-01-01T00:00:00.1Z","message":{"role":"assistant","content":"Hi"},"done":false}\n'
    fake.script(Behavior(sse_raw=[line], sse_interval=0.01))
    r, events, _ = gw.stream(chat_body("llama", stream=True))
    assert r.status == 200, r
    data = httpc.sse_data(events)
    assert "[DONE]" not in data and "error" in data[-1], data


def test_health_checks_hit_api_tags(make_gateway, fake):
    fake.health_path = "/api/tags"
    gw = gw_for(make_gateway, fake, health_check={"interval_s": 1, "timeout_s": 1})
    assert fake.wait_for(lambda: len(fake.health_requests) >= 1, 5)
    assert fake.health_requests[0].path == "/api/tags"
    assert gw.chat("llama").status == 200
    time.sleep(0.1)
