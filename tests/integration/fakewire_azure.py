"""fakewire_azure.py — Azure OpenAI's deployments API for fakeupstream.py.

  POST /openai/deployments/{deployment}/chat/completions?api-version=V
  POST /openai/deployments/{deployment}/embeddings?api-version=V
  api-key: KEY

Bodies, answers and streams are OpenAI's, so the answer is fakeupstream's own
OpenAI rendering (stream_events, _usage, _embeddings_body). Before answering,
what makes the request Azure's is checked, answering Azure's own errors and
recording the reason in req.wire_error:
  * the api-key header: required, and equal to fake.azure_key when set (401,
    code "401", "Access denied due to invalid subscription key ...");
  * no Authorization header next to it (a client's credentials must never
    reach the upstream) — 400;
  * api-version present in the query, equal to fake.azure_api_version when set
    (404 "Resource not found", as Azure answers an unknown version);
  * the deployment in fake.azure_deployments when set (404 DeploymentNotFound);
  * a JSON object body with messages (chat) or input (embeddings).
"""

import json
import urllib.parse

import fakeupstream as fu

CT = "application/json"
PREFIX = "/openai/deployments/"


def match(req):
    return req.method == "POST" and req.path.startswith(PREFIX)


def _err(code, message):
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()


_ERRORS = {
    400: ("BadRequest", "Invalid request."),
    401: ("401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
                 "provide a valid key for an active subscription and use a correct regional API "
                 "endpoint for your resource."),
    404: ("404", "Resource not found"),
    429: ("429", "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
                 "2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. "
                 "Please retry after 7 seconds."),
    500: ("InternalServerError", "The server had an error while processing your request."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


def error_body(status):
    code, msg = _ERRORS.get(status, (str(status), "error %d" % status))
    return CT, _err(code, msg), []


class WireError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _route(req):
    """(deployment, operation) of the path, or WireError."""
    rest = req.path[len(PREFIX):]
    dep, _, op = rest.partition("/")
    if not dep or op not in ("chat/completions", "embeddings"):
        raise WireError(404, "404", "Resource not found")
    return urllib.parse.unquote(dep), op


def _check(fake, req):
    key = req.header("api-key")
    want = getattr(fake, "azure_key", None)
    if not key or (want is not None and key != want):
        raise WireError(401, *_ERRORS[401])
    if req.header("authorization") is not None:
        raise WireError(400, "BadRequest", "an Authorization header reached the upstream next to api-key")
    q = urllib.parse.parse_qs(req.target.partition("?")[2])
    versions = q.get("api-version", [])
    want_v = getattr(fake, "azure_api_version", None)
    if len(versions) != 1 or (want_v is not None and versions[0] != want_v):
        raise WireError(404, "404", "Resource not found")
    dep, op = _route(req)
    known = getattr(fake, "azure_deployments", None)
    if known is not None and dep not in known:
        raise WireError(404, "DeploymentNotFound",
                        "The API deployment for this resource does not exist. If you created the "
                        "deployment within the last 5 minutes, please wait a moment and try again.")
    try:
        p = json.loads(req.body)
    except ValueError:
        raise WireError(400, "BadRequest", "We could not parse the JSON body of your request.")
    if not isinstance(p, dict) or (op == "chat/completions" and not isinstance(p.get("messages"), list)) \
            or (op == "embeddings" and "input" not in p):
        raise WireError(400, "BadRequest", "Invalid request body.")
    return dep, op, p


async def respond(fake, conn, req, b, keep, extra):
    try:
        dep, op, p = _check(fake, req)
    except WireError as e:
        req.wire_error = e.message
        await fake._send(conn, e.status, [("Content-Type", CT)], _err(e.code, e.message), False, not keep)
        return keep
    req.azure_deployment = dep
    model = b.model or p.get("model") or dep
    if op == "embeddings":
        await fake._send(conn, 200, [("Content-Type", b.content_type or CT)] + extra,
                         fu._embeddings_body(p, model, b), b.chunked, not keep)
        return keep
    cid = "chatcmpl-azure%06d" % len(fake.requests)
    if not p.get("stream"):
        msg = {"role": "assistant", "content": b.content, "refusal": None}
        if b.tool_calls:
            msg["content"] = None
            msg["tool_calls"] = [{"id": t["id"], "type": "function",
                                  "function": {"name": t["name"], "arguments": t["arguments"]}}
                                 for t in b.tool_calls]
        body = json.dumps({"id": cid, "object": "chat.completion", "created": fu.CREATED, "model": model,
                           "choices": [{"index": 0, "message": msg, "logprobs": None,
                                        "finish_reason": "tool_calls" if b.tool_calls else "stop"}],
                           "usage": fu._usage(b)}, separators=(",", ":")).encode()
        await fake._send(conn, 200, [("Content-Type", b.content_type or CT)] + extra, body, b.chunked, not keep)
        return keep
    include_usage = bool((p.get("stream_options") or {}).get("include_usage"))
    head = ["HTTP/1.1 200 OK", "Content-Type: " + (b.content_type or "text/event-stream; charset=utf-8"),
            "Transfer-Encoding: chunked"] + ["%s: %s" % kv for kv in extra]
    if not keep:
        head.append("Connection: close")
    req.sent_status = 200
    await fake._write(conn, ("\r\n".join(head) + "\r\n\r\n").encode())
    n_content = 0
    for kind, ev in fu.stream_events(cid, model, b, include_usage):
        if b.chunk_interval and not await conn.sleep_or_closed(b.chunk_interval):
            return False
        await fake._write(conn, fu._chunk(ev))
        req.sent_events.append(ev)
        if kind == "content":
            n_content += 1
            if b.disconnect_after is not None and n_content >= b.disconnect_after:
                conn.writer.transport.abort()
                return False
    await fake._write(conn, b"0\r\n\r\n")
    return keep
