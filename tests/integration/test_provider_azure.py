"""The azure provider type: OpenAI's wire format behind Azure's deployments URL,
api-version query and api-key header, against fakewire_azure.py (which refuses,
with Azure's own errors, a request without the right key, version or
deployment, and records why in req.wire_error)."""

import json

import httpc
from conftest import Behavior, base_config, chat_body, free_port

GA_VERSION = "2024-10-21"


def azure(fake, **kw):
    p = {"name": "az", "type": "azure", "url": fake.url, "api_key": "az-key"}
    p.update(kw)
    return p


def gw_for(make_gateway, fake, prov=None, **model):
    m = {"name": "gpt", "provider": "az", "upstream_model": "gpt-4o"}
    m.update(model)
    return make_gateway(base_config(free_port(), [prov or azure(fake)], [m]))


def posts(fake):
    return [r for r in fake.requests if r.method == "POST"]


def ok(req):
    assert getattr(req, "wire_error", None) is None, req.wire_error
    return req


def test_url_key_and_passthrough(make_gateway, fake):
    fake.azure_key = "az-key"
    fake.azure_api_version = "2024-06-01"
    fake.azure_deployments = {"gpt4o-prod"}
    gw = gw_for(make_gateway, fake, azure(fake, deployment="gpt4o-prod", api_version="2024-06-01"))
    body = chat_body("gpt", content="hi", temperature=0.25, user="u-1")
    r = gw.chat(body["model"], messages=body["messages"], temperature=0.25, user="u-1",
                headers={"Authorization": "Bearer client-key", "x-request-id": "az-1"})
    assert r.status == 200, r
    up = ok(posts(fake)[0])
    assert up.target == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
    assert up.header_all("api-key") == ["az-key"]
    assert up.header("authorization") is None        # the client's credentials stay home
    assert up.header("x-request-id") == "az-1"
    assert up.header("content-type") == "application/json"
    # the OpenAI body with the usual surgical edit only (the model name)
    assert up.json() == dict(body, model="gpt-4o")
    assert r.body == up.sent_body                     # the answer passes through
    assert r.json()["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_defaults_deployment_is_upstream_model_and_ga_version(make_gateway, fake):
    fake.azure_api_version = GA_VERSION
    gw = gw_for(make_gateway, fake)
    assert gw.chat("gpt").status == 200
    up = ok(posts(fake)[0])
    assert up.target == "/openai/deployments/gpt-4o/chat/completions?api-version=" + GA_VERSION
    assert up.azure_deployment == "gpt-4o"


def test_deployment_name_is_escaped_and_model_key_wins(make_gateway, fake):
    fake.azure_key = "model-key"
    gw = gw_for(make_gateway, fake, azure(fake, deployment="my dep/1"), api_key="model-key")
    assert gw.chat("gpt").status == 200
    up = ok(posts(fake)[0])
    assert up.path == "/openai/deployments/my%20dep%2F1/chat/completions"
    assert up.header_all("api-key") == ["model-key"]


def test_stream_usage_asked_and_hidden(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.default = Behavior(content="one two three", prompt_tokens=9, completion_tokens=3)
    r, events, _ = gw.stream(chat_body("gpt", stream=True), headers={"x-request-id": "az-st"})
    assert r.status == 200, r
    up = ok(posts(fake)[0])
    assert up.json()["stream_options"] == {"include_usage": True}
    data = httpc.sse_data(events)
    assert data[-1] == "[DONE]" and all(d["choices"] for d in data[:-1])
    assert "".join(d["choices"][0]["delta"].get("content") or "" for d in data[:-1]) == "one two three"
    log = gw.wait_log(lambda l: l.get("msg") == "request" and l.get("id") == "az-st")
    assert log and (log["prompt_tokens"], log["completion_tokens"]) == (9, 3)


def test_embeddings_path(make_gateway, fake):
    gw = gw_for(make_gateway, fake, azure(fake, deployment="emb-3"))
    r = gw.post("/v1/embeddings", json_body={"model": "gpt", "input": ["a", "b"]})
    assert r.status == 200, r
    up = ok(posts(fake)[0])
    assert up.target == "/openai/deployments/emb-3/embeddings?api-version=" + GA_VERSION
    assert up.json() == {"model": "gpt-4o", "input": ["a", "b"]}
    assert len(r.json()["data"]) == 2


def test_anthropic_client_translated(make_gateway, fake):
    gw = gw_for(make_gateway, fake)
    fake.default = Behavior(tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'}])
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    r = gw.post("/v1/messages", json_body={"model": "gpt", "max_tokens": 50, "system": "Be terse.", "tools": [tool],
                                           "messages": [{"role": "user", "content": "Paris?"}]})
    assert r.status == 200, r
    j = r.json()
    assert j["stop_reason"] == "tool_use"
    assert j["content"][0] == {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    up = ok(posts(fake)[0])
    assert up.target.startswith("/openai/deployments/gpt-4o/chat/completions?api-version=")
    sent = up.json()
    assert sent["messages"][0] == {"role": "system", "content": "Be terse."}
    assert sent["max_tokens"] == 50


def test_wrong_key_is_502_and_errors_map(make_gateway, fake):
    fake.azure_key = "the-right-key"
    gw = gw_for(make_gateway, fake, azure(fake, max_attempts=1, ejection={"consecutive_failures": 1000}))
    r = gw.chat("gpt")
    assert r.status == 502, r
    assert "credentials" in r.json()["error"]["message"]
    assert posts(fake)[0].wire_error.startswith("Access denied")
    fake.azure_key = None
    fake.script(Behavior(status=429, retry_after=7))
    r = gw.chat("gpt")
    assert r.status == 429 and r.header("retry-after") == "7", r
    fake.script(Behavior(status=500))
    assert gw.chat("gpt").status == 502
    assert gw.chat("gpt").status == 200
    # a missing api_key: no api-key header, Azure answers 401, the gateway 502
    gw2 = make_gateway(base_config(free_port(), [{"name": "az", "type": "azure", "url": fake.url}],
                                   [{"name": "gpt", "provider": "az"}]))
    fake.clear()
    r = gw2.chat("gpt")
    assert r.status == 502, r
    assert all(q.header("api-key") is None for q in posts(fake))
