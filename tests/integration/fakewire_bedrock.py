"""fakewire_bedrock.py — the AWS Bedrock Runtime Converse API for fakeupstream.py.

Answers POST .../model/{modelId}/converse and .../converse-stream the way
bedrock-runtime does, after checking what the gateway sent:

  * SigV4: the signature is recomputed here, independently of umbra's C
    signer (hashlib/hmac), from the request as received — method, the raw
    path encoded once more per segment (non-S3 services sign the wire path
    double-encoded: a model id's ':' travels as %3A, is signed as %253A),
    query, the signed headers' values, SHA-256 of the body — and the keys
    the test gave the fake:
        fake.aws_keys   = {"AKID...": "secret"}   (required)
        fake.aws_tokens = {"AKID...": "session token"}  (optional: then the
                          request must carry and sign x-amz-security-token)
        fake.aws_region = "us-east-1"             (optional, default us-east-1)
    A wrong signature gets 403 InvalidSignatureException, an unknown key
    or token 403 UnrecognizedClientException, no Authorization 403
    MissingAuthenticationTokenException, a stale x-amz-date 403
    InvalidSignatureException "Signature expired".
  * The body: the Converse request shape (roles alternate and start with
    user, no blank text, toolConfig present with toolUse/toolResult
    blocks, every toolResult answers a toolUse of the previous turn, tool
    ids and names match Bedrock's patterns, known members only). A fault is
    a 400 ValidationException with Bedrock's wording.
  Each fault is recorded on the request: req.wire_error = "why".

The answer renders the Behavior: content (streamed one word per
contentBlockDelta), tool_calls (toolUse blocks, parallel ones included),
prompt/completion/cached tokens as Bedrock's usage (inputTokens excludes
cache reads), disconnect_after, chunk_interval, pause_after/pause, sse_raw
(raw bytes instead of the generated stream). A stream is the binary
application/vnd.amazon.eventstream framing with both CRCs, each message
padded with the random "p" member Bedrock adds, and cut across two HTTP
chunks so the gateway's decoder sees messages split.
    fake.bedrock_exception_after = (n, "throttlingException", "message")
sends an exception message after n content deltas instead of finishing.
"""

import binascii
import datetime
import hashlib
import hmac
import json
import random
import re
import struct
import time
import urllib.parse
import uuid

_PATH = re.compile(r"^(?P<prefix>(?:/[^/]+)*?)/model/(?P<model>[^/]+)/(?P<op>converse|converse-stream)$")

_ERRORS = {
    400: ("ValidationException", "Malformed input request, please reformat your input and try again."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified model ID."),
    404: ("ResourceNotFoundException", "Could not resolve the foundation model from the provided model identifier."),
    408: ("ModelTimeoutException", "Model has timed out in processing the request. Try your request again."),
    424: ("ModelErrorException", "The model produced an invalid sequence as part of ToolUse."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an error processing your request."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}

_TOP_KEYS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
             "additionalModelRequestFields", "promptVariables", "additionalModelResponseFieldPaths",
             "requestMetadata", "performanceConfig"}
_BLOCK_KEYS = {"text", "image", "document", "video", "toolUse", "toolResult", "guardContent",
               "cachePoint", "reasoningContent"}
_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PAD = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


class WireError(Exception):
    def __init__(self, status, etype, message, why):
        super().__init__(why)
        self.status, self.etype, self.message, self.why = status, etype, message, why


def match(req):
    return req.method == "POST" and _PATH.match(req.path) is not None


def model_of(req):
    """The model id a Converse request names (its path segment, decoded)."""
    return urllib.parse.unquote(_PATH.match(req.path).group("model"))


def _error_headers(etype):
    return [("x-amzn-RequestId", str(uuid.uuid4())),
            ("x-amzn-ErrorType", etype + ":http://internal.amazon.com/coral/com.amazon.bedrock/")]


def error_body(status):
    etype, msg = _ERRORS.get(status, ("InternalServerException", "The server encountered an error processing your request."))
    return "application/json", json.dumps({"message": msg}).encode(), _error_headers(etype)


# ------------------------------------------------------------------ SigV4 --

def _uri_encode(s, safe=""):
    return urllib.parse.quote(s, safe="-_.~" + safe)


def canonical_uri(raw_path):
    """The path as received, dot and empty segments removed, each segment
    encoded once more (what the AWS SDKs sign for every service but S3)."""
    out = []
    for seg in raw_path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    path = "/" + "/".join(_uri_encode(s) for s in out)
    if out and raw_path.endswith("/"):
        path += "/"
    return path


def canonical_query(raw_query):
    pairs = []
    for part in raw_query.split("&") if raw_query else []:
        if not part:
            continue
        k, _, v = part.partition("=")
        pairs.append((_uri_encode(urllib.parse.unquote(k)), _uri_encode(urllib.parse.unquote(v))))
    pairs.sort()
    return "&".join("%s=%s" % kv for kv in pairs)


def _trimall(v):
    return " ".join(v.split())


def canonical_request(req, signed):
    raw_path, _, raw_query = req.target.partition("?")
    lines = [req.method, canonical_uri(raw_path), canonical_query(raw_query)]
    for name in signed:
        lines.append("%s:%s" % (name, ",".join(_trimall(v) for v in req.header_all(name))))
    lines += ["", ";".join(signed), hashlib.sha256(req.body).hexdigest()]
    return "\n".join(lines)


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signature(secret, date, region, service, string_to_sign):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    k = _hmac(k, "aws4_request")
    return hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()


_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")


def _forbidden(etype, message, why):
    return WireError(403, etype, message, why)


def check_sigv4(fake, req):
    """Raises WireError unless the request is signed like AWS wants it."""
    keys = getattr(fake, "aws_keys", None) or {}
    tokens = getattr(fake, "aws_tokens", None) or {}
    region = getattr(fake, "aws_region", "us-east-1")
    authz = req.header("authorization")
    if not authz:
        raise _forbidden("MissingAuthenticationTokenException", "Missing Authentication Token",
                         "no Authorization header")
    m = _AUTH.match(authz)
    if not m:
        raise _forbidden("IncompleteSignatureException",
                         "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
                         "malformed Authorization: %r" % authz)
    akid, day, cregion, service, signed_s, sig = m.groups()
    signed = signed_s.split(";")
    req.aws_akid = akid
    if akid not in keys:
        raise _forbidden("UnrecognizedClientException", "The security token included in the request is invalid.",
                         "unknown access key %s" % akid)
    if cregion != region or service != "bedrock":
        raise _forbidden("InvalidSignatureException",
                         "Credential should be scoped to a valid region. ",
                         "credential scope %s/%s, expected %s/bedrock" % (cregion, service, region))
    if signed != sorted(set(signed)) or "host" not in signed or "x-amz-date" not in signed:
        raise _forbidden("InvalidSignatureException",
                         "The request signature we calculated does not match the signature you provided.",
                         "signed headers %s: host and x-amz-date must be signed, sorted, once" % signed_s)
    amz_date = req.header("x-amz-date") or ""
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise _forbidden("IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.",
                         "bad x-amz-date %r" % amz_date)
    if amz_date[:8] != day:
        raise _forbidden("InvalidSignatureException", "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.",
                         "scope date %s vs x-amz-date %s" % (day, amz_date))
    skew = abs(time.time() - when.timestamp())
    if skew > 15 * 60:
        raise _forbidden("InvalidSignatureException", "Signature expired: %s is now earlier than the allowed window." % amz_date,
                         "x-amz-date %s is %d s away from now" % (amz_date, skew))
    want_token = tokens.get(akid)
    token = req.header("x-amz-security-token")
    if want_token is not None and (token != want_token or "x-amz-security-token" not in signed):
        raise _forbidden("UnrecognizedClientException", "The security token included in the request is invalid.",
                         "x-amz-security-token %r (signed: %s), expected %r" % (
                             token, "x-amz-security-token" in signed, want_token))
    if want_token is None and token is not None:
        raise _forbidden("UnrecognizedClientException", "The security token included in the request is invalid.",
                         "unexpected x-amz-security-token for a long-term key")
    creq = canonical_request(req, signed)
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, "%s/%s/bedrock/aws4_request" % (day, region),
                     hashlib.sha256(creq.encode()).hexdigest()])
    req.canonical_request = creq
    want = signature(keys[akid], day, region, "bedrock", sts)
    if not hmac.compare_digest(want, sig):
        raise _forbidden("InvalidSignatureException",
                         "The request signature we calculated does not match the signature you provided. "
                         "Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
                         "signature mismatch; canonical request:\n" + creq)


# ----------------------------------------------------------------- body --

def _invalid(message, why=None):
    return WireError(400, "ValidationException", message, why or message)


def _check_text(t, where):
    if not isinstance(t, str):
        raise _invalid("Malformed input request: %s.text: expected type: String" % where)
    if not t.strip():
        raise _invalid("The text field in the ContentBlock object at %s is blank. Add text to the text field, and try again." % where)


def _check_tool_result(tr, where):
    if not isinstance(tr, dict) or not _ID.match(str(tr.get("toolUseId", ""))):
        raise _invalid("Malformed input request: %s.toolResult.toolUseId failed to satisfy constraint" % where)
    content = tr.get("content")
    if not isinstance(content, list):
        raise _invalid("Malformed input request: %s.toolResult.content: expected type: JSONArray" % where)
    for k, blk in enumerate(content):
        w = "%s.toolResult.content.%d" % (where, k)
        if not isinstance(blk, dict) or len(blk) != 1 or next(iter(blk)) not in ("text", "json", "image", "document", "video"):
            raise _invalid("Malformed input request: %s: expected exactly one of text, json, image, document, video" % w)
        if "text" in blk:
            _check_text(blk["text"], w)
    if "status" in tr and tr["status"] not in ("success", "error"):
        raise _invalid("Malformed input request: %s.toolResult.status is not one of success, error" % where)
    extra = set(tr) - {"toolUseId", "content", "status"}
    if extra:
        raise _invalid("Malformed input request: extraneous key [%s] is not permitted" % sorted(extra)[0])


def _check_block(blk, where):
    if not isinstance(blk, dict) or len(blk) != 1 or next(iter(blk)) not in _BLOCK_KEYS:
        raise _invalid("Malformed input request: %s: a ContentBlock must hold exactly one member" % where)
    kind, val = next(iter(blk.items()))
    if kind == "text":
        _check_text(val, where)
    elif kind == "toolUse":
        if (not isinstance(val, dict) or not _ID.match(str(val.get("toolUseId", "")))
                or not _ID.match(str(val.get("name", ""))) or not isinstance(val.get("input"), dict)):
            raise _invalid("Malformed input request: %s.toolUse: toolUseId, name and an object input are required" % where)
    elif kind == "toolResult":
        _check_tool_result(val, where)
    elif kind == "image":
        src = val.get("source") if isinstance(val, dict) else None
        if (not isinstance(val, dict) or val.get("format") not in ("png", "jpeg", "gif", "webp")
                or not isinstance(src, dict) or len(src) != 1):
            raise _invalid("Malformed input request: %s.image: format and one source are required" % where)
        if "bytes" in src:
            binascii.a2b_base64(src["bytes"])
    return kind


def _check_tool_config(tc):
    if not isinstance(tc, dict) or not isinstance(tc.get("tools"), list) or not tc["tools"]:
        raise _invalid("Malformed input request: toolConfig.tools: expected minimum item count: 1")
    for i, t in enumerate(tc["tools"]):
        spec = t.get("toolSpec") if isinstance(t, dict) else None
        if (not isinstance(spec, dict) or not _ID.match(str(spec.get("name", "")))
                or not isinstance((spec.get("inputSchema") or {}).get("json"), dict)):
            raise _invalid("Malformed input request: toolConfig.tools.%d.toolSpec: name and inputSchema.json are required" % i)
        if "description" in spec and (not isinstance(spec["description"], str) or not spec["description"]):
            raise _invalid("Malformed input request: toolConfig.tools.%d.toolSpec.description: expected minLength: 1" % i)
    choice = tc.get("toolChoice")
    if choice is not None:
        if not isinstance(choice, dict) or len(choice) != 1 or next(iter(choice)) not in ("auto", "any", "tool"):
            raise _invalid("Malformed input request: toolConfig.toolChoice: exactly one of auto, any, tool")
        if "tool" in choice and choice["tool"].get("name") not in [t["toolSpec"]["name"] for t in tc["tools"]]:
            raise _invalid("The provided tool choice name is not in the list of tools.")
    extra = set(tc) - {"tools", "toolChoice"}
    if extra:
        raise _invalid("Malformed input request: extraneous key [%s] is not permitted" % sorted(extra)[0])


def _check_turn_ids(msgs):
    """Every toolResult answers a toolUse of the turn just before, and
    every toolUse is answered by the next turn (when there is one)."""
    for i, m in enumerate(msgs):
        uses = [b["toolUse"]["toolUseId"] for b in m["content"] if "toolUse" in b]
        results = [b["toolResult"]["toolUseId"] for b in m["content"] if "toolResult" in b]
        if results:
            prev = msgs[i - 1] if i else None
            prev_uses = [b["toolUse"]["toolUseId"] for b in prev["content"] if "toolUse" in b] if prev else []
            if len(results) > len(prev_uses):
                raise _invalid("The number of toolResult blocks at messages.%d.content exceeds the number of "
                               "toolUse blocks of previous turn." % i)
            missing = [r for r in results if r not in prev_uses]
            if missing:
                raise _invalid("The toolUseId %s at messages.%d.content does not match any toolUse of the previous turn."
                               % (missing[0], i))
        if uses and i + 1 < len(msgs):
            answered = [b["toolResult"]["toolUseId"] for b in msgs[i + 1]["content"] if "toolResult" in b]
            missing = [u for u in uses if u not in answered]
            if missing:
                raise _invalid("Expected toolResult blocks at messages.%d.content for the following Ids: %s"
                               % (i + 1, ", ".join(missing)))


def check_body(req):
    """The parsed Converse request, or WireError (400 ValidationException)."""
    if (req.header("content-type") or "").split(";")[0].strip() != "application/json":
        raise _invalid("Malformed input request: the content type must be application/json",
                       "content-type %r" % req.header("content-type"))
    try:
        body = json.loads(req.body)
    except ValueError as e:
        raise _invalid("Malformed input request: the request body is not JSON", "body not JSON: %s" % e)
    if not isinstance(body, dict):
        raise _invalid("Malformed input request: expected a JSON object")
    extra = set(body) - _TOP_KEYS
    if extra:
        raise _invalid("Malformed input request: extraneous key [%s] is not permitted" % sorted(extra)[0])
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise _invalid("Malformed input request: messages: expected minimum item count: 1")
    kinds = set()
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant") or set(m) - {"role", "content"}:
            raise _invalid("Malformed input request: messages.%d: role user or assistant and content only" % i)
        if i == 0 and m["role"] != "user":
            raise _invalid("A conversation must start with a user message. Try again with a conversation that starts with a user message.")
        if i and m["role"] == msgs[i - 1]["role"]:
            raise _invalid("A conversation must alternate between user and assistant roles. Make sure the "
                           "conversation alternates between user and assistant roles and try again.")
        if not isinstance(m.get("content"), list) or not m["content"]:
            raise _invalid("Malformed input request: messages.%d.content: expected minimum item count: 1" % i)
        for j, blk in enumerate(m["content"]):
            kind = _check_block(blk, "messages.%d.content.%d" % (i, j))
            kinds.add(kind)
            if kind == "toolUse" and m["role"] != "assistant" or kind == "toolResult" and m["role"] != "user":
                raise _invalid("messages.%d.content.%d: %s blocks belong to %s turns" % (
                    i, j, kind, "assistant" if kind == "toolUse" else "user"))
    if kinds & {"toolUse", "toolResult"} and "toolConfig" not in body:
        raise _invalid("The toolConfig field must be defined when using toolUse and toolResult content blocks.")
    if "toolConfig" in body:
        _check_tool_config(body["toolConfig"])
    _check_turn_ids(msgs)
    for k, s in enumerate(body.get("system") or []):
        if not isinstance(s, dict) or len(s) != 1:
            raise _invalid("Malformed input request: system.%d: exactly one member" % k)
        if "text" in s:
            _check_text(s["text"], "system.%d" % k)
    ic = body.get("inferenceConfig")
    if ic is not None:
        if not isinstance(ic, dict) or set(ic) - {"maxTokens", "temperature", "topP", "stopSequences"}:
            raise _invalid("Malformed input request: inferenceConfig: unknown member")
        if "maxTokens" in ic and (not isinstance(ic["maxTokens"], int) or ic["maxTokens"] < 1):
            raise _invalid("Malformed input request: inferenceConfig.maxTokens: expected minimum value: 1")
        for k in ("temperature", "topP"):
            if k in ic and not (isinstance(ic[k], (int, float)) and 0 <= ic[k] <= 1):
                raise _invalid("Malformed input request: inferenceConfig.%s: expected a number in [0, 1]" % k)
        stops = ic.get("stopSequences", [])
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise _invalid("Malformed input request: inferenceConfig.stopSequences: non-empty strings")
    return body


# -------------------------------------------------------------- answers --

def _usage(b):
    cached = min(b.cached_tokens, b.prompt_tokens)
    u = {"inputTokens": b.prompt_tokens - cached, "outputTokens": b.completion_tokens,
         "totalTokens": b.prompt_tokens + b.completion_tokens}
    if cached:
        u["cacheReadInputTokens"] = cached
        u["cacheWriteInputTokens"] = 0
    return u


def _tool_input(call):
    args = call.get("arguments") or "{}"
    try:
        v = json.loads(args)
    except ValueError:
        v = {}
    return v if isinstance(v, dict) else {}


def _content_blocks(b):
    if b.tool_calls:
        return [{"toolUse": {"toolUseId": c["id"], "name": c["name"], "input": _tool_input(c)}}
                for c in b.tool_calls]
    return [{"text": b.content}]


def _pad():
    return _PAD[:random.randint(1, len(_PAD))]


def _header(name, value):
    n, v = name.encode(), value.encode()
    return bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v


def encode_message(headers, payload):
    """One event-stream message: prelude, prelude CRC, headers (all
    strings here), payload, message CRC."""
    hb = b"".join(_header(k, v) for k, v in headers)
    prelude = struct.pack(">II", 16 + len(hb) + len(payload), len(hb))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    msg = prelude + hb + payload
    return msg + struct.pack(">I", binascii.crc32(msg))


def event(etype, payload):
    payload = dict(payload, p=_pad())
    return encode_message([(":event-type", etype), (":content-type", "application/json"),
                           (":message-type", "event")], json.dumps(payload, separators=(",", ":")).encode())


def exception(etype, message):
    return encode_message([(":exception-type", etype), (":content-type", "application/json"),
                           (":message-type", "exception")], json.dumps({"message": message}).encode())


def stream_events(b):
    """(kind, bytes) of a ConverseStream answer, like stream_events in
    fakeupstream.py; kind "content" marks the deltas disconnect_after counts."""
    out = [("start", event("messageStart", {"role": "assistant"}))]
    if b.tool_calls:
        for i, c in enumerate(b.tool_calls):
            args = json.dumps(_tool_input(c), separators=(",", ":"))
            out.append(("block", event("contentBlockStart", {
                "contentBlockIndex": i, "start": {"toolUse": {"toolUseId": c["id"], "name": c["name"]}}})))
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                out.append(("content", event("contentBlockDelta", {
                    "contentBlockIndex": i, "delta": {"toolUse": {"input": piece}}})))
            out.append(("block", event("contentBlockStop", {"contentBlockIndex": i})))
        stop = "tool_use"
    else:
        pieces = b.chunks
        if pieces is None:
            words = b.content.split(" ")
            pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        for p in pieces:
            out.append(("content", event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": p}})))
        out.append(("block", event("contentBlockStop", {"contentBlockIndex": 0})))
        stop = "end_turn"
    out.append(("stop", event("messageStop", {"stopReason": stop})))
    out.append(("metadata", event("metadata", {"usage": _usage(b), "metrics": {"latencyMs": 42}})))
    return out


async def _send_error(fake, conn, req, err, keep):
    req.wire_error = err.why
    await fake._send(conn, err.status, [("Content-Type", "application/json")] + _error_headers(err.etype),
                     json.dumps({"message": err.message}).encode(), False, not keep)
    return keep


async def respond(fake, conn, req, b, keep, extra):
    import fakeupstream as fu

    req.wire_error = None
    m = _PATH.match(req.path)
    req.model_id = model_of(req)
    try:
        check_sigv4(fake, req)
        req.converse = check_body(req)
    except WireError as e:
        return await _send_error(fake, conn, req, e, keep)
    rid = [("x-amzn-RequestId", str(uuid.uuid4()))]
    if m.group("op") == "converse":
        body = json.dumps({
            "metrics": {"latencyMs": 42},
            "output": {"message": {"content": _content_blocks(b), "role": "assistant"}},
            "stopReason": "tool_use" if b.tool_calls else "end_turn",
            "usage": _usage(b),
        }, separators=(",", ":")).encode()
        await fake._send(conn, 200, [("Content-Type", b.content_type or "application/json")] + rid + extra,
                         body, b.chunked, not keep)
        return keep

    head = ["HTTP/1.1 200 OK", "Content-Type: " + (b.content_type or "application/vnd.amazon.eventstream"),
            "Transfer-Encoding: chunked", "x-amzn-RequestId: " + rid[0][1]]
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
    exc_after = getattr(fake, "bedrock_exception_after", None)
    n_content = 0
    for kind, ev in stream_events(b):
        if b.chunk_interval and not await conn.sleep_or_closed(b.chunk_interval):
            return False
        # one message across two HTTP chunks: the decoder must join them
        cut = random.randint(1, len(ev) - 1)
        await fake._write(conn, fu._chunk(ev[:cut]))
        await fake._write(conn, fu._chunk(ev[cut:]))
        req.sent_events.append(ev)
        if kind != "content":
            continue
        n_content += 1
        if exc_after is not None and n_content >= exc_after[0]:
            ex = exception(exc_after[1], exc_after[2])
            await fake._write(conn, fu._chunk(ex) + b"0\r\n\r\n")
            req.sent_events.append(ex)
            return keep
        if b.disconnect_after is not None and n_content >= b.disconnect_after:
            conn.writer.transport.abort()
            return False
        if b.pause_after is not None and n_content == b.pause_after and b.pause:
            if not await conn.sleep_or_closed(b.pause):
                return False
    await fake._write(conn, b"0\r\n\r\n")
    return keep


# ------------------------------------------------------- decoding (tests) --

def decode_stream(data):
    """[(headers dict, payload bytes)] of an event stream, both CRCs
    checked — for tests that look at what the fake sent."""
    out, pos = [], 0
    while pos < len(data):
        total, hlen = struct.unpack(">II", data[pos:pos + 8])
        assert binascii.crc32(data[pos:pos + 8]) == struct.unpack(">I", data[pos + 8:pos + 12])[0]
        msg = data[pos:pos + total]
        assert binascii.crc32(msg[:-4]) == struct.unpack(">I", msg[-4:])[0]
        headers, h = {}, 12
        while h < 12 + hlen:
            nl = msg[h]
            name = msg[h + 1:h + 1 + nl].decode()
            h += 1 + nl
            assert msg[h] == 7, "only string headers are sent here"
            vl = struct.unpack(">H", msg[h + 1:h + 3])[0]
            headers[name] = msg[h + 3:h + 3 + vl].decode()
            h += 3 + vl
        out.append((headers, msg[12 + hlen:-4]))
        pos += total
    return out
