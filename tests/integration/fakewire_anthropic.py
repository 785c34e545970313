"""fakewire_anthropic.py — the Anthropic Messages API for fakeupstream.py.

fakeupstream dispatches every POST .../v1/messages here (see _wire_for).
Like the real API this module first checks what it was sent, and answers
the vendor's own error when something is wrong:

  401 authentication_error  x-api-key missing, or not fake.expect_api_key
                            (when the test set it); an Authorization header
  400 invalid_request_error anthropic-version missing or unknown; a body that
                            is not JSON; model / max_tokens / messages missing
                            or mistyped; members the API does not know ("Extra
                            inputs are not permitted"); roles that do not
                            alternate; empty text blocks; a tool_result whose
                            tool_use_id is not a tool_use of the assistant turn
                            just before, or that comes after text; a tool_use
                            left without its tool_result; tool blocks or
                            tool_choice without tools; a tool without an object
                            input_schema

The reason is recorded on the request (req.wire_error) so tests can assert
on it. Then it answers like the API: a message (content text, or tool_use
blocks for b.tool_calls, parallel calls included), or for "stream": true the
events message_start, content_block_start, ping, content_block_delta (one
text_delta per word, input_json_delta in two pieces per call),
content_block_stop, message_delta, message_stop. Usage: input_tokens is
b.prompt_tokens - b.cached_tokens, cache_read_input_tokens b.cached_tokens
(so the gateway's prompt count is b.prompt_tokens), output_tokens
b.completion_tokens. b.disconnect_after, b.chunk_interval, b.pause_after /
b.pause, b.sse_raw and b.model are honoured; b.garbage and error statuses
are handled by fakeupstream before this module is called (error_body).
"""

import json

VERSIONS = ("2023-06-01", "2023-01-01")

# top-level members of POST /v1/messages (anything else is refused)
KNOWN = {"model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
         "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier",
         "container", "mcp_servers", "context_management"}
BLOCKS = {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking", "document",
          "search_result"}

_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
           403: "permission_error", 404: "not_found_error", 413: "request_too_large",
           429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error",
           504: "timeout_error", 529: "overloaded_error"}
_MESSAGES = {429: "Number of request tokens has exceeded your per-minute rate limit",
             529: "Overloaded", 503: "Overloaded", 500: "Internal server error",
             401: "invalid x-api-key", 403: "Your API key does not have permission to use the specified resource.",
             404: "model: not found"}


def match(req):
    return req.method == "POST" and req.path.endswith("/v1/messages")


def _request_id(fake):
    return "req_fake%08d" % len(fake.requests) if fake is not None else "req_fake"


def _error(status, message, fake=None):
    body = json.dumps({"type": "error", "error": {"type": _ERRORS.get(status, "api_error"),
                                                  "message": message},
                       "request_id": _request_id(fake)}, separators=(",", ":")).encode()
    return "application/json", body, [("request-id", _request_id(fake))]


def error_body(status):
    """The API's error for a scripted status (429 keeps the test's retry-after)."""
    return _error(status, _MESSAGES.get(status, "fake upstream says %d" % status))


# -------------------------------------------------------------- checks ----

class WireError(Exception):
    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


def _check_headers(fake, req):
    if req.header("authorization") is not None:
        raise WireError(401, "unexpected Authorization header: Anthropic authenticates with x-api-key")
    key = req.header("x-api-key")
    if not key:
        raise WireError(401, "x-api-key header is required")
    want = getattr(fake, "expect_api_key", None)
    if want is not None and key != want:
        raise WireError(401, "invalid x-api-key")
    version = req.header("anthropic-version")
    if not version:
        raise WireError(400, "anthropic-version: header is required")
    if version not in VERSIONS:
        raise WireError(400, "anthropic-version: invalid version %r" % version)
    if not (req.header("content-type") or "").lower().startswith("application/json"):
        raise WireError(400, "content-type must be application/json")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_text(path, blk):
    if not isinstance(blk.get("text"), str):
        raise WireError(400, "%s.text: Field required" % path)
    if blk["text"] == "":
        raise WireError(400, "%s: text content blocks must be non-empty" % path)


def _check_block(path, role, blk):
    if not isinstance(blk, dict) or blk.get("type") not in BLOCKS:
        raise WireError(400, "%s: unknown or missing block type" % path)
    t = blk["type"]
    if t == "text":
        _check_text(path, blk)
    elif t == "image":
        src = blk.get("source") or {}
        if src.get("type") == "base64":
            if not (isinstance(src.get("media_type"), str) and isinstance(src.get("data"), str)):
                raise WireError(400, "%s.source: media_type and data are required" % path)
        elif src.get("type") == "url":
            if not isinstance(src.get("url"), str):
                raise WireError(400, "%s.source.url: Field required" % path)
        else:
            raise WireError(400, "%s.source.type: must be base64 or url" % path)
    elif t == "tool_use":
        if role != "assistant":
            raise WireError(400, "%s: tool_use blocks are only allowed in assistant messages" % path)
        if not isinstance(blk.get("id"), str) or not isinstance(blk.get("name"), str):
            raise WireError(400, "%s: tool_use needs id and name" % path)
        if not isinstance(blk.get("input"), dict):
            raise WireError(400, "%s.input: Input should be a valid dictionary" % path)
    elif t == "tool_result":
        if role != "user":
            raise WireError(400, "%s: tool_result blocks are only allowed in user messages" % path)
        if not isinstance(blk.get("tool_use_id"), str):
            raise WireError(400, "%s.tool_use_id: Field required" % path)
        c = blk.get("content")
        if c is not None and not isinstance(c, (str, list)):
            raise WireError(400, "%s.content: Input should be a valid string or list" % path)
        if isinstance(c, list):
            for j, sub in enumerate(c):
                _check_block("%s.content.%d" % (path, j), "user", sub)
        if "is_error" in blk and not isinstance(blk["is_error"], bool):
            raise WireError(400, "%s.is_error: Input should be a valid boolean" % path)


def _blocks(msg):
    c = msg.get("content")
    return [{"type": "text", "text": c}] if isinstance(c, str) else c


def _check_tool_pairs(i, prev_uses, blocks):
    """tool_result blocks answer the tool_use blocks of the assistant turn
    just before, every one of them, and come before any other block."""
    seen_other = False
    answered = set()
    for j, blk in enumerate(blocks):
        if blk["type"] != "tool_result":
            seen_other = True
            continue
        if seen_other:
            raise WireError(400, "messages.%d.content.%d: tool_result blocks must come first in the "
                                 "user message, before any other content" % (i, j))
        tid = blk["tool_use_id"]
        if tid not in prev_uses:
            raise WireError(400, "messages.%d.content.%d: unexpected `tool_use_id` found in `tool_result` "
                                 "blocks: %s. Each `tool_result` block must have a corresponding `tool_use` "
                                 "block in the previous message." % (i, j, tid))
        answered.add(tid)
    missing = [t for t in prev_uses if t not in answered]
    if missing:
        raise WireError(400, "messages.%d: `tool_use` ids were found without `tool_result` blocks "
                             "immediately after: %s. Each `tool_use` block must have a corresponding "
                             "`tool_result` block in the next message." % (i - 1, ", ".join(missing)))


def _check_messages(msgs):
    if not isinstance(msgs, list) or not msgs:
        raise WireError(400, "messages: at least one message is required")
    prev_role = None
    prev_uses = []
    any_tool_block = False
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise WireError(400, "messages.%d.role: Input should be 'user' or 'assistant'" % i)
        role = m["role"]
        if role == prev_role:
            raise WireError(400, "messages: roles must alternate between \"user\" and \"assistant\", "
                                 "but found multiple \"%s\" roles in a row" % role)
        blocks = _blocks(m)
        if not isinstance(blocks, list):
            raise WireError(400, "messages.%d.content: Input should be a valid list" % i)
        last = i == len(msgs) - 1
        if not blocks and not (last and role == "assistant"):
            raise WireError(400, "messages.%d: all messages must have non-empty content except for "
                                 "the optional final assistant message" % i)
        for j, blk in enumerate(blocks):
            _check_block("messages.%d.content.%d" % (i, j), role, blk)
            any_tool_block = any_tool_block or blk["type"] in ("tool_use", "tool_result")
        if role == "user":
            if prev_uses or any(b["type"] == "tool_result" for b in blocks):
                _check_tool_pairs(i, prev_uses, blocks)
            prev_uses = []
        else:
            prev_uses = [b["id"] for b in blocks if b["type"] == "tool_use"]
        prev_role = role
    return any_tool_block


def _check_tools(p, any_tool_block):
    tools = p.get("tools")
    if tools is None:
        if "tool_choice" in p:
            raise WireError(400, "tool_choice may only be specified while providing tools")
        if any_tool_block:
            raise WireError(400, "Requests which include `tool_use` or `tool_result` blocks must define tools.")
        return
    if not isinstance(tools, list):
        raise WireError(400, "tools: Input should be a valid list")
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise WireError(400, "tools.%d.name: Field required" % i)
        schema = t.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise WireError(400, "tools.%d.custom.input_schema.type: Field required" % i)
    tc = p.get("tool_choice")
    if tc is not None:
        if not isinstance(tc, dict) or tc.get("type") not in ("auto", "any", "tool", "none"):
            raise WireError(400, "tool_choice: Input tag does not match any of the expected tags")
        if tc["type"] == "tool" and not isinstance(tc.get("name"), str):
            raise WireError(400, "tool_choice.tool.name: Field required")


def _check_body(req):
    try:
        p = json.loads(req.body)
    except ValueError:
        raise WireError(400, "There was an error parsing the body of your request. Make sure it is valid JSON.")
    if not isinstance(p, dict):
        raise WireError(400, "Input should be a valid dictionary")
    for k in p:
        if k not in KNOWN:
            raise WireError(400, "%s: Extra inputs are not permitted" % k)
    if not isinstance(p.get("model"), str) or not p["model"]:
        raise WireError(400, "model: Field required")
    if not _is_int(p.get("max_tokens")) or p["max_tokens"] < 1:
        raise WireError(400, "max_tokens: Field required")
    any_tool_block = _check_messages(p.get("messages"))
    _check_tools(p, any_tool_block)
    sysv = p.get("system")
    if sysv is not None and not isinstance(sysv, (str, list)):
        raise WireError(400, "system: Input should be a valid string or list")
    for k in ("temperature", "top_p"):
        if k in p and (not isinstance(p[k], (int, float)) or isinstance(p[k], bool) or not 0 <= p[k] <= 1):
            raise WireError(400, "%s: Input should be between 0 and 1" % k)
    if "stream" in p and not isinstance(p["stream"], bool):
        raise WireError(400, "stream: Input should be a valid boolean")
    return p


# ------------------------------------------------------------- answers ----

def _usage(b, start=False):
    u = {"input_tokens": max(b.prompt_tokens - b.cached_tokens, 0),
         "cache_creation_input_tokens": 0, "cache_read_input_tokens": b.cached_tokens,
         "output_tokens": 1 if start else b.completion_tokens}
    if not start:
        u["service_tier"] = "standard"
    return u


def _tool_blocks(b):
    out = []
    for tc in b.tool_calls or []:
        args = tc.get("arguments") or "{}"
        out.append({"type": "tool_use", "id": tc["id"], "name": tc["name"], "input": json.loads(args)})
    return out


def _message(cid, model, b):
    content = _tool_blocks(b) if b.tool_calls else [{"type": "text", "text": b.content}]
    return {"id": cid, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": "tool_use" if b.tool_calls else "end_turn", "stop_sequence": None,
            "usage": _usage(b)}


def _sse(event, data):
    return ("event: %s\ndata: %s\n\n" % (event, json.dumps(data, separators=(",", ":")))).encode()


def stream_events(cid, model, b):
    """The (kind, bytes) events of a real Messages stream; kind "content"
    marks each delta (what disconnect_after and pause_after count)."""
    start = {"id": cid, "type": "message", "role": "assistant", "model": model, "content": [],
             "stop_reason": None, "stop_sequence": None, "usage": _usage(b, start=True)}
    out = [("start", _sse("message_start", {"type": "message_start", "message": start}))]
    if b.tool_calls:
        for i, tc in enumerate(b.tool_calls):
            out.append(("block", _sse("content_block_start", {
                "type": "content_block_start", "index": i,
                "content_block": {"type": "tool_use", "id": tc["id"], "name": tc["name"], "input": {}}})))
            if i == 0:
                out.append(("ping", _sse("ping", {"type": "ping"})))
            args = tc.get("arguments") or ""
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                out.append(("content", _sse("content_block_delta", {
                    "type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": piece}})))
            out.append(("stop", _sse("content_block_stop", {"type": "content_block_stop", "index": i})))
    else:
        pieces = b.chunks
        if pieces is None:
            words = b.content.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        out.append(("block", _sse("content_block_start", {
            "type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})))
        out.append(("ping", _sse("ping", {"type": "ping"})))
        for p in pieces:
            out.append(("content", _sse("content_block_delta", {
                "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})))
        out.append(("stop", _sse("content_block_stop", {"type": "content_block_stop", "index": 0})))
    out.append(("delta", _sse("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if b.tool_calls else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": b.completion_tokens}})))
    out.append(("stop", _sse("message_stop", {"type": "message_stop"})))
    return out


async def respond(fake, conn, req, b, keep, extra):
    from fakeupstream import _chunk  # the one chunked-encoding writer
    try:
        _check_headers(fake, req)
        payload = _check_body(req)
    except WireError as e:
        req.wire_error = e.message
        ct, body, more = _error(e.status, e.message, fake)
        await fake._send(conn, e.status, [("Content-Type", ct)] + more, body, False, not keep)
        return keep
    req.wire_error = None
    model = b.model or payload["model"]
    cid = "msg_fake%06d" % len(fake.requests)
    rid = [("request-id", _request_id(fake))]
    if not payload.get("stream"):
        body = json.dumps(_message(cid, model, b), separators=(",", ":")).encode()
        await fake._send(conn, 200, [("Content-Type", b.content_type or "application/json")] + rid + extra,
                         body, b.chunked, not keep)
        return keep

    head = ["HTTP/1.1 200 OK", "Content-Type: " + (b.content_type or "text/event-stream; charset=utf-8"),
            "Transfer-Encoding: chunked", "Cache-Control: no-cache", "request-id: " + rid[0][1]]
    for k, v in extra:
        head.append("%s: %s" % (k, v))
    if not keep:
        head.append("Connection: close")
    req.sent_status = 200
    await fake._write(conn, ("\r\n".join(head) + "\r\n\r\n").encode())
    if b.sse_raw is not None:
        for piece in b.sse_raw:
            if not await conn.sleep_or_closed(b.sse_interval):
                return False
            await fake._write(conn, _chunk(piece))
            req.sent_events.append(piece)
        await fake._write(conn, b"0\r\n\r\n")
        return keep
    n_content = 0
    for kind, ev in stream_events(cid, model, b):
        if b.chunk_interval and not await conn.sleep_or_closed(b.chunk_interval):
            return False
        await fake._write(conn, _chunk(ev))
        req.sent_events.append(ev)
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
