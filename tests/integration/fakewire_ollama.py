"""fakewire_ollama.py — Ollama's native API for fakeupstream.py (ollama/ollama docs/api.md).

  POST /api/chat    {"model","messages","tools","stream","options"} → one JSON
                    answer, or with "stream": true an NDJSON body
                    (Content-Type: application/x-ndjson, chunked): one object per
                    line, message deltas with "done": false, then a last line with
                    "done": true, "done_reason" and the counts.
  POST /api/embed   {"model","input"} → {"model","embeddings","prompt_eval_count",...}

Answers are shaped like Ollama's Go encoder writes them (member order, compact,
one "\\n" after each object, nanosecond created_at). Behavior fields used:
content / chunks (one line per word), tool_calls (all in one message, arguments
as objects; Ollama sends no ids unless `ollama_ids` is set on the Behavior),
prompt_tokens → prompt_eval_count, completion_tokens → eval_count, model,
chunk_interval, pause_after/pause, disconnect_after, sse_raw (raw NDJSON bytes),
usage_in_stream=False (no counts), content_type, chunked. Ollama has no count
for cached prompt tokens, so cached_tokens cannot be rendered. A Behavior
attribute `done_reason` (set after construction) overrides "stop".

Before answering, the request is checked the way Ollama's handler would read it
and stricter where a gateway bug would hide (every check failing answers
Ollama's own {"error": "..."} with 400, 401 or 404 and records the reason in
req.wire_error):
  * Content-Type application/json, a JSON object body, a non-empty "model";
  * fake.ollama_bearer set: "Authorization: Bearer <it>" is required (401);
  * fake.ollama_models set: other models get 404 "model ... not found";
  * chat: "stream" present and boolean (Ollama streams when it is absent);
    messages with role system|user|assistant|tool and string content, images
    a list of base64 strings, tool_calls with function.name and object
    arguments; a tool message must follow an assistant message with tool_calls
    (or another tool message) and its tool_name / tool_call_id must name one of
    those calls; tools of type function with object parameters; options with
    the right types;
  * embed: input a string or a list of strings.
"""

import base64
import binascii
import datetime
import json

import fakeupstream as fu

CT_JSON = "application/json; charset=utf-8"
CT_NDJSON = "application/x-ndjson"
ROLES = ("system", "user", "assistant", "tool")
OPTION_TYPES = {"num_predict": int, "top_k": int, "seed": int, "num_ctx": int,
                "temperature": (int, float), "top_p": (int, float), "min_p": (int, float),
                "repeat_penalty": (int, float), "presence_penalty": (int, float),
                "frequency_penalty": (int, float), "stop": list}


def match(req):
    return req.method == "POST" and req.path in ("/api/chat", "/api/embed")


_ERRORS = {400: "invalid request", 401: "unauthorized", 403: "forbidden",
           404: 'model "fake" not found, try pulling it first',
           429: "too many requests", 500: "an error was encountered while running the model",
           502: "bad gateway", 503: "server busy, please try again.  maximum pending requests exceeded"}


def _err(message):
    return json.dumps({"error": message}, separators=(",", ":")).encode()


def error_body(status):
    return CT_JSON, _err(_ERRORS.get(status, "error %d" % status)), []


def _now():
    """created_at as Go's RFC 3339 with nanoseconds (distinct per answer)."""
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%06d123Z" % t.microsecond


def _dumps(obj):
    # Go's encoding/json: compact, and <, >, & escaped
    s = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class WireError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _check_message(i, m, prev_calls):
    """prev_calls: the tool calls of the assistant message this one may answer."""
    if not isinstance(m, dict):
        raise WireError(400, "messages[%d] is not an object" % i)
    role = m.get("role")
    if role not in ROLES:
        raise WireError(400, "messages[%d]: invalid role %r" % (i, role))
    if not isinstance(m.get("content", ""), str):
        raise WireError(400, "messages[%d]: content must be a string" % i)
    for img in m.get("images") or []:
        try:
            base64.b64decode(img, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise WireError(400, "messages[%d]: images must be base64 data" % i)
    calls = m.get("tool_calls")
    if calls is not None:
        if role != "assistant" or not isinstance(calls, list) or not calls:
            raise WireError(400, "messages[%d]: tool_calls only on assistant messages" % i)
        for c in calls:
            fn = c.get("function") if isinstance(c, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise WireError(400, "messages[%d]: a tool call without function.name" % i)
            if not isinstance(fn.get("arguments"), dict):
                raise WireError(400, "messages[%d]: tool call arguments must be an object" % i)
    if role == "tool":
        if not prev_calls:
            raise WireError(400, "messages[%d]: a tool message without a preceding tool call" % i)
        names = {c["function"]["name"] for c in prev_calls}
        ids = {c.get("id") for c in prev_calls if c.get("id")}
        if "tool_name" in m and m["tool_name"] not in names:
            raise WireError(400, "messages[%d]: tool_name %r answers no call" % (i, m["tool_name"]))
        if "tool_call_id" in m and m["tool_call_id"] not in ids:
            raise WireError(400, "messages[%d]: tool_call_id %r answers no call" % (i, m["tool_call_id"]))
    return calls


def _check_chat(p):
    if "stream" not in p or not isinstance(p["stream"], bool):
        raise WireError(400, "stream must be given as a boolean (Ollama streams when it is absent)")
    msgs = p.get("messages")
    if not isinstance(msgs, list):
        raise WireError(400, "messages must be a list")
    prev_calls = None
    for i, m in enumerate(msgs):
        calls = _check_message(i, m, prev_calls)
        if m.get("role") == "assistant":
            prev_calls = calls
        elif m.get("role") != "tool":
            prev_calls = None
    for t in p.get("tools") or []:
        fn = t.get("function") if isinstance(t, dict) else None
        if t.get("type") != "function" or not isinstance(fn, dict) or not fn.get("name") \
                or not isinstance(fn.get("parameters", {}), dict):
            raise WireError(400, "invalid tool %r" % (t,))
    opts = p.get("options", {})
    if not isinstance(opts, dict):
        raise WireError(400, "options must be an object")
    for k, v in opts.items():
        want = OPTION_TYPES.get(k)
        if want is None or isinstance(v, bool) or not isinstance(v, want):
            raise WireError(400, "option %r has the wrong type or is unknown" % k)
    for s in opts.get("stop", []):
        if not isinstance(s, str):
            raise WireError(400, "option stop must be a list of strings")


def _check_embed(p):
    inp = p.get("input")
    if isinstance(inp, str):
        return [inp]
    if isinstance(inp, list) and all(isinstance(x, str) for x in inp):
        return inp
    raise WireError(400, "invalid input type")


def _check(fake, req):
    """The request's JSON, or WireError."""
    ct = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ct != "application/json":
        raise WireError(400, "content-type %r is not application/json" % ct)
    want = getattr(fake, "ollama_bearer", None)
    if want is not None and req.header("authorization") != "Bearer " + want:
        raise WireError(401, "unauthorized")
    try:
        p = json.loads(req.body)
    except ValueError as e:
        raise WireError(400, "invalid character in body: %s" % e)
    if not isinstance(p, dict):
        raise WireError(400, "the body is not a JSON object")
    model = p.get("model")
    if not isinstance(model, str) or not model:
        raise WireError(400, "model is required")
    known = getattr(fake, "ollama_models", None)
    if known is not None and model not in known:
        raise WireError(404, 'model "%s" not found, try pulling it first' % model)
    if req.path == "/api/chat":
        _check_chat(p)
    else:
        _check_embed(p)
    return p


def _counts(b):
    return {"total_duration": 5191566416, "load_duration": 2154458,
            "prompt_eval_count": b.prompt_tokens, "prompt_eval_duration": 383809000,
            "eval_count": b.completion_tokens, "eval_duration": 4799921000}


def _tool_calls(b):
    out = []
    for i, t in enumerate(b.tool_calls or []):
        call = {"function": {"index": i, "name": t["name"], "arguments": json.loads(t["arguments"] or "{}")}}
        if getattr(b, "ollama_ids", False):
            call = dict({"id": t["id"]}, **call)
        out.append(call)
    return out


def _final(model, b, with_counts=True):
    d = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": ""},
         "done_reason": getattr(b, "done_reason", "stop"), "done": True}
    if with_counts:
        d.update(_counts(b))
    return d


async def _answer_embed(fake, conn, req, p, b, keep, extra):
    inputs = _check_embed(p)
    embs = [[round(0.001 * (i + 1) * (k + 1), 6) for k in range(8)] for i in range(len(inputs))]
    body = _dumps({"model": b.model or p["model"], "embeddings": embs, "total_duration": 14143917,
                   "load_duration": 1019500, "prompt_eval_count": b.prompt_tokens})
    await fake._send(conn, 200, [("Content-Type", b.content_type or CT_JSON)] + extra, body,
                     b.chunked, not keep)
    return keep


async def _answer_chat(fake, conn, req, p, b, keep, extra):
    model = b.model or p["model"]
    if not p["stream"]:
        msg = {"role": "assistant", "content": "" if b.tool_calls else b.content}
        if b.tool_calls:
            msg["tool_calls"] = _tool_calls(b)
        d = {"model": model, "created_at": _now(), "message": msg,
             "done_reason": getattr(b, "done_reason", "stop"), "done": True}
        d.update(_counts(b))
        await fake._send(conn, 200, [("Content-Type", b.content_type or CT_JSON)] + extra, _dumps(d),
                         b.chunked, not keep)
        return keep

    head = ["HTTP/1.1 200 OK", "Content-Type: " + (b.content_type or CT_NDJSON),
            "Date: " + datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT"),
            "Transfer-Encoding: chunked"]
    head += ["%s: %s" % kv for kv in extra]
    if not keep:
        head.append("Connection: close")
    req.sent_status = 200
    await fake._write(conn, ("\r\n".join(head) + "\r\n\r\n").encode())
    if b.sse_raw is not None:
        for piece in b.sse_raw:
            if not await conn.sleep_or_closed(b.sse_interval):
                return False
            await fake._write(conn, fu._chunk(piece))
            req.sent_events.append(piece)
        await fake._write(conn, b"0\r\n\r\n")
        return keep

    lines = []
    pieces = b.chunks
    if pieces is None:
        words = b.content.split(" ") if not b.tool_calls else []
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    for piece in pieces:
        lines.append(("content", {"model": model, "created_at": _now(),
                                  "message": {"role": "assistant", "content": piece}, "done": False}))
    if b.tool_calls:
        lines.append(("tools", {"model": model, "created_at": _now(),
                                "message": {"role": "assistant", "content": "", "tool_calls": _tool_calls(b)},
                                "done": False}))
    lines.append(("done", _final(model, b, b.usage_in_stream)))
    n_content = 0
    for kind, obj in lines:
        if b.chunk_interval and not await conn.sleep_or_closed(b.chunk_interval):
            return False
        data = _dumps(obj) + b"\n"
        await fake._write(conn, fu._chunk(data))
        req.sent_events.append(data)
        if kind == "content":
            n_content += 1
            if b.disconnect_after is not None and n_content >= b.disconnect_after:
                conn.writer.transport.abort()
                return False
            if b.pause_after is not None and n_content == b.pause_after and b.pause:
                if not await conn.sleep_or_closed(b.pause):
                    return False
    await fake._write(conn, b"0\r\n\r\n")
    return keep


async def respond(fake, conn, req, b, keep, extra):
    try:
        p = _check(fake, req)
    except WireError as e:
        req.wire_error = e.message
        await fake._send(conn, e.status, [("Content-Type", CT_JSON)], _err(e.message), False, not keep)
        return keep
    if req.path == "/api/embed":
        return await _answer_embed(fake, conn, req, p, b, keep, extra)
    return await _answer_chat(fake, conn, req, p, b, keep, extra)
