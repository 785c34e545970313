"""Concurrency through translation: 240 requests at once, both client dialects
on openai-, anthropic-, bedrock- and ollama-type models, half of them streams;
every answer must be the one for its own request (no cross-wiring of decoder
or encoder state between requests) with the usage the fake reported for it."""

import asyncio
import json
import re

from conftest import Behavior, base_config, free_port, provider
from test_load import _read_response

N = 240
KINDS = ["openai", "anthropic", "bedrock", "ollama"]
AKID, SECRET = "AKIAUMBRALOADTEST001", "load/secret"


def _answer(req):
    m = re.search(rb"req-(\d+)", req.body)
    if not m:
        return None
    i = int(m.group(1))
    return Behavior(content="answer for req-%d ok" % i, prompt_tokens=10 + i % 37, completion_tokens=5 + i % 11)


def _cfg(fake):
    fake.aws_keys = {AKID: SECRET}
    fake.expect_api_key = "sk-ant-load"
    provs = [provider("p-openai", fake),
             {"name": "p-anthropic", "type": "anthropic", "url": fake.url, "api_key": "sk-ant-load"},
             {"name": "p-bedrock", "type": "bedrock", "url": fake.url, "region": "us-east-1",
              "access_key_id": AKID, "secret_access_key": SECRET},
             {"name": "p-ollama", "type": "ollama", "url": fake.url}]
    models = [{"name": "m-%s" % k, "provider": "p-%s" % k, "upstream_model": "up-%s" % k} for k in KINDS]
    return base_config(free_port(), provs, models, workers=2, log={"level": "warn", "requests": False})


def _text_and_usage(dialect, stream, raw):
    """The answer text and (prompt, completion) tokens from a client's view."""
    if not stream:
        j = json.loads(raw)
        if dialect == "openai":
            return j["choices"][0]["message"]["content"], (j["usage"]["prompt_tokens"],
                                                           j["usage"]["completion_tokens"])
        return "".join(b["text"] for b in j["content"]), (j["usage"]["input_tokens"],
                                                          j["usage"]["output_tokens"])
    text, usage = "", None
    for line in raw.split(b"\n"):
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        d = json.loads(line[6:])
        if dialect == "openai":
            if d.get("choices"):
                text += d["choices"][0]["delta"].get("content") or ""
            if d.get("usage"):
                usage = (d["usage"]["prompt_tokens"], d["usage"]["completion_tokens"])
        elif d["type"] == "content_block_delta":
            text += d["delta"]["text"]
        elif d["type"] == "message_delta":
            usage = (d["usage"].get("input_tokens"), d["usage"]["output_tokens"])
        elif d["type"] == "error":
            raise AssertionError("error event: %r" % d)
    return text, usage


async def _one(port, i, results, gate):
    await gate.wait()
    kind, dialect, stream = KINDS[i % 4], ("openai", "anthropic")[i // 4 % 2], i // 8 % 2 == 1
    msg = [{"role": "user", "content": "req-%d" % i}]
    if dialect == "openai":
        path, body = "/v1/chat/completions", {"model": "m-" + kind, "messages": msg}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
    else:
        path, body = "/v1/messages", {"model": "m-" + kind, "max_tokens": 64, "messages": msg, "stream": stream}
    data = json.dumps(body).encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
        await writer.drain()
        status, _, raw = await asyncio.wait_for(_read_response(reader), 60)
        writer.close()
        assert status == 200, (status, raw[:300])
        text, usage = _text_and_usage(dialect, stream, raw)
        assert text == "answer for req-%d ok" % i, text
        assert usage[1] == 5 + i % 11, usage
        if usage[0] is not None and not (dialect == "anthropic" and stream and kind == "openai"):
            assert usage[0] == 10 + i % 37, usage
        results[i] = "ok"
    except Exception as e:  # noqa: BLE001
        results[i] = "%s %s %s stream=%s: %r" % (i, kind, dialect, stream, e)


def test_translated_requests_in_parallel_are_not_cross_wired(make_gateway, fake):
    fake.handler = _answer
    gw = make_gateway(_cfg(fake))

    async def run():
        gate = asyncio.Event()
        results = {}
        tasks = [asyncio.create_task(_one(gw.port, i, results, gate)) for i in range(N)]
        await asyncio.sleep(0.1)
        gate.set()
        await asyncio.gather(*tasks)
        return results

    results = asyncio.run(run())
    bad = [r for r in results.values() if r != "ok"]
    assert not bad, bad[:5]
    assert len(results) == N
    # every request reached the fake in its own wire format
    paths = {r.path.split("/")[-1] for r in fake.requests if r.method == "POST"}
    assert paths >= {"completions", "messages", "converse", "converse-stream", "chat"}, paths
