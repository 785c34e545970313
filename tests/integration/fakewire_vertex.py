"""fakewire_vertex.py — Google Vertex AI (Gemini, publishers/google) and Google's
OAuth 2.0 token endpoint for fakeupstream.py.

Two services, as in real life usually on two hosts (use two FakeUpstreams):

  POST .../token      the OAuth token endpoint (a key file's token_uri). It
      takes grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer and an
      assertion, and VERIFIES it like Google does: three base64url parts,
      header alg RS256 (kid = the key's private_key_id), the RS256 signature
      checked with the service account's public key (python `cryptography`),
      iss = client_email, aud = token_uri, scope including cloud-platform,
      iat/exp a short-lived (<= 1 h), current window. A fault is an OAuth
      400 {"error": "invalid_grant" | "invalid_scope" | ..., "error_description"}
      with Google's wording; success issues {"access_token", "expires_in",
      "token_type": "Bearer"}. Configure with fake.vertex_auth = ServiceAccount.

  POST .../v1/projects/P/locations/L/publishers/google/models/M:generateContent
       and :streamGenerateContent?alt=sse   the Gemini API. Checks, in the
      order Vertex does: Authorization: Bearer <a token the ServiceAccount
      issued and not expired> (or fake.vertex_static_token) else 401
      UNAUTHENTICATED; project P = fake.vertex_project else 403
      PERMISSION_DENIED; location L = fake.vertex_location else 400; the body
      a GenerateContentRequest (JSON, known member names only, roles
      user/model, no empty parts or texts, function calls after a user or
      function response turn, as many function responses as the calls they
      answer, Schema types, stopSequences <= 5, ...) else 400
      INVALID_ARGUMENT with Vertex's wording.

  Each fault is recorded on the request: req.wire_error = "why" (None when
  the request was right); a good model request also gets req.vertex =
  {"project", "location", "model", "method", "body"}.

The answer renders the Behavior: content (streamed one word per chunk),
tool_calls (functionCall parts instead of text: Gemini has no call ids), prompt / completion
/ cached tokens as usageMetadata (cumulative through a stream, the final
chunk carries the totals), disconnect_after, chunk_interval, pause_after /
pause, sse_raw. SSE events are "data: <json>\\r\\n\\r\\n" as Vertex frames them.
"""

import base64
import json
import os
import re
import secrets
import threading
import time
import urllib.parse

_MODEL_PATH = re.compile(r"^(?P<prefix>(?:/[^/]+)*?)/v1/projects/(?P<project>[^/]+)/locations/"
                         r"(?P<location>[^/]+)/publishers/google/models/(?P<model>[^/:]+)"
                         r":(?P<method>generateContent|streamGenerateContent)$")
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"

_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
           501: "NOT_IMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    401: ("Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
          "or other valid authentication credential. See "
          "https://developers.google.com/identity/sign-in/web/devconsole-project."),
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: ("Resource exhausted. Please try again later. Please refer to "
          "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."),
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "Deadline expired before operation could complete.",
}
_GOOGLE_HEADERS = [("Vary", "Origin, X-Origin, Referer"), ("Server", "scaffolding on HTTPServer2"), ("X-XSS-Protection", "0"),
                   ("X-Frame-Options", "SAMEORIGIN"), ("X-Content-Type-Options", "nosniff")]


def match(req):
    if req.method != "POST":
        return False
    return _MODEL_PATH.match(req.path) is not None or req.path.endswith("/token")


def model_of(req):
    """The model a Gemini request names (its path segment, decoded)."""
    return urllib.parse.unquote(_MODEL_PATH.match(req.path).group("model"))


# --------------------------------------------------------------- errors --

class WireError(Exception):
    def __init__(self, status, message, why, headers=()):
        super().__init__(why)
        self.status, self.message, self.why, self.headers = status, message, why, list(headers)


def _google_error(status, message):
    return json.dumps({"error": {"code": status, "message": message,
                                 "status": _STATUS.get(status, "UNKNOWN")}}, indent=2).encode() + b"\n"


def error_body(status):
    """A Vertex error as the scripted Behavior(status=...) asks for."""
    return ("application/json; charset=UTF-8", _google_error(status, _MESSAGES.get(status, "Unknown error.")),
            _GOOGLE_HEADERS)


async def _send_error(fake, conn, req, e, keep):
    req.wire_error = e.why
    await fake._send(conn, e.status, [("Content-Type", "application/json; charset=UTF-8")] + _GOOGLE_HEADERS
                     + e.headers, _google_error(e.status, e.message), False, not keep)
    return keep


# -------------------------------------------------------- OAuth (token) --

def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(s):
    if not re.fullmatch(r"[A-Za-z0-9_-]*", s):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class ServiceAccount:
    """A service account: its RSA key (generated), its key file, and the
    tokens its token endpoint issued.

        sa = ServiceAccount(token_uri)        then sa.write(path) for umbra
        token_fake.vertex_auth = sa           the token endpoint verifies with sa.public_key
        model_fake.vertex_auth = sa           the model endpoint accepts sa's tokens
    """

    def __init__(self, token_uri, email="umbra-gw@my-proj.iam.gserviceaccount.com", expires_in=3599):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key = self.key.public_key()
        self.private_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()).decode()
        self.email = email
        self.key_id = secrets.token_hex(20)
        self.token_uri = token_uri
        self.expires_in = expires_in      # what the endpoint grants (Google: 3599)
        self.fail_with = None             # (status, error, description): the endpoint refuses
        self.issued = {}                  # token -> expiry (monotonic)
        self.token_requests = []          # the verified claims of each grant, in order
        self._lock = threading.Lock()

    def key_file(self, **override):
        d = {"type": "service_account", "project_id": "my-proj", "private_key_id": self.key_id,
             "private_key": self.private_pem, "client_email": self.email, "client_id": "1098765432101234567890",
             "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": self.token_uri,
             "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
             "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/" + self.email,
             "universe_domain": "googleapis.com"}
        d.update(override)
        return d

    def write(self, path, **override):
        with open(path, "w") as f:
            json.dump(self.key_file(**override), f, indent=2)
        os.chmod(path, 0o600)
        return path

    def issue(self):
        tok = "ya29.c." + _b64url(secrets.token_bytes(48))
        with self._lock:
            self.issued[tok] = time.monotonic() + self.expires_in
        return tok

    def token_state(self, tok):
        """None when tok is valid now, else why not."""
        with self._lock:
            exp = self.issued.get(tok)
        if exp is None:
            return "unknown access token"
        if time.monotonic() >= exp:
            return "expired access token"
        return None

    def verify_assertion(self, assertion):
        """The claims of a valid assertion; raises WireError (OAuth wording)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def bad(error, desc, why):
            return WireError(400, (error, desc), why)

        parts = assertion.split(".")
        if len(parts) != 3:
            raise bad("invalid_grant", "Invalid JWT: not three segments", "assertion is not a JWS compact JWT")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            sig = _b64url_decode(parts[2])
        except ValueError as e:
            raise bad("invalid_grant", "Invalid JWT: malformed", "assertion segments are not base64url JSON: %s" % e)
        if "=" in assertion:
            raise bad("invalid_grant", "Invalid JWT: malformed", "assertion has base64 padding")
        if not isinstance(header, dict) or header.get("alg") != "RS256":
            raise bad("invalid_grant", "Invalid JWT Signature.", "header alg is %r, not RS256" % (header,))
        if header.get("typ", "JWT") != "JWT":
            raise bad("invalid_grant", "Invalid JWT: typ", "header typ is %r" % header.get("typ"))
        if "kid" in header and header["kid"] != self.key_id:
            raise bad("invalid_grant", "Invalid JWT Signature.", "kid %r is not the key's id" % header["kid"])
        try:
            self.public_key.verify(sig, (parts[0] + "." + parts[1]).encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise bad("invalid_grant", "Invalid JWT Signature.", "RS256 signature does not verify")
        if not isinstance(claims, dict):
            raise bad("invalid_grant", "Invalid JWT: claims", "claims are not an object")
        if claims.get("iss") != self.email:
            raise bad("invalid_grant", "Invalid grant: account not found", "iss %r" % claims.get("iss"))
        if claims.get("aud") != self.token_uri:
            raise bad("invalid_grant", "Invalid JWT: Failed audience check.", "aud %r is not %r"
                      % (claims.get("aud"), self.token_uri))
        if SCOPE not in str(claims.get("scope", "")).split(" "):
            raise bad("invalid_scope", "Invalid OAuth scope or ID token audience provided.",
                      "scope %r lacks cloud-platform" % claims.get("scope"))
        iat, exp, now = claims.get("iat"), claims.get("exp"), time.time()
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600 or exp <= iat \
                or iat > now + 300 or exp < now - 300:
            raise bad("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                      "reasonable timeframe. Check your iat and exp values in the JWT claim.",
                      "iat %r exp %r now %d" % (iat, exp, now))
        return claims


async def _respond_token(fake, conn, req, keep):
    sa = getattr(fake, "vertex_auth", None)
    head = [("Content-Type", "application/json; charset=utf-8"),
            ("Cache-Control", "no-cache, no-store, max-age=0, must-revalidate"), ("Pragma", "no-cache")]

    async def oauth(status, obj, why=None):
        req.wire_error = why
        await fake._send(conn, status, head, json.dumps(obj, indent=2).encode(), False, not keep)
        return keep

    if sa is None:
        return await oauth(404, {"error": "not_found"}, "no ServiceAccount configured on this fake")
    ct = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ct != "application/x-www-form-urlencoded":
        return await oauth(400, {"error": "invalid_request", "error_description": "Bad Request"},
                           "content-type %r" % ct)
    try:
        form = urllib.parse.parse_qs(req.body.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (ValueError, UnicodeDecodeError) as e:
        return await oauth(400, {"error": "invalid_request", "error_description": "Bad Request"},
                           "form body: %s" % e)
    if any(len(v) != 1 for v in form.values()):
        return await oauth(400, {"error": "invalid_request", "error_description": "Bad Request"},
                           "repeated form fields")
    if form.get("grant_type", [""])[0] != GRANT:
        return await oauth(400, {"error": "unsupported_grant_type",
                                 "error_description": "Invalid grant_type: " + form.get("grant_type", [""])[0]},
                           "grant_type %r" % form.get("grant_type"))
    if "assertion" not in form:
        return await oauth(400, {"error": "invalid_request", "error_description": "Missing required parameter: assertion"},
                           "no assertion")
    try:
        claims = sa.verify_assertion(form["assertion"][0])
    except WireError as e:
        return await oauth(e.status, {"error": e.message[0], "error_description": e.message[1]}, e.why)
    sa.token_requests.append(claims)
    if sa.fail_with is not None:
        st, err, desc = sa.fail_with
        return await oauth(st, {"error": err, "error_description": desc}, None)
    return await oauth(200, {"access_token": sa.issue(), "expires_in": sa.expires_in, "token_type": "Bearer"})


# ---------------------------------------------- GenerateContentRequest --

_TOP = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
        "cachedContent", "labels", "model"}
_CONTENT = {"role", "parts"}
_PART_DATA = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
              "codeExecutionResult"}
_PART = _PART_DATA | {"thought", "thoughtSignature", "videoMetadata"}
_GENCFG = {"temperature", "topP", "topK", "candidateCount", "maxOutputTokens", "stopSequences", "presencePenalty",
           "frequencyPenalty", "seed", "responseMimeType", "responseSchema", "responseLogprobs", "logprobs",
           "responseModalities", "thinkingConfig", "mediaResolution", "audioTimestamp", "routingConfig"}
_TOOL = {"functionDeclarations", "retrieval", "googleSearch", "googleSearchRetrieval", "codeExecution",
         "enterpriseWebSearch", "urlContext"}
_DECL = {"name", "description", "parameters", "parametersJsonSchema", "response", "responseJsonSchema"}
_SCHEMA = {"type", "format", "title", "description", "nullable", "default", "items", "minItems", "maxItems",
           "enum", "properties", "propertyOrdering", "required", "minProperties", "maxProperties", "minimum",
           "maximum", "minLength", "maxLength", "pattern", "example", "anyOf"}
_TYPES = {"TYPE_UNSPECIFIED", "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"}
_FUNC_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")


def _bad(why, message=None):
    return WireError(400, message or why, why)


def _unknown(obj, allowed, where):
    for k in obj:
        if k not in allowed:
            raise _bad("unknown member %r at %s" % (k, where),
                       "Invalid JSON payload received. Unknown name \"%s\" at '%s': Cannot find field." % (k, where))


def _obj(v, where):
    if not isinstance(v, dict):
        raise _bad("%s is not an object" % where,
                   "Invalid JSON payload received. Expected an object at '%s'." % where)
    return v


def _check_schema(s, where, depth=0):
    _obj(s, where)
    _unknown(s, _SCHEMA, where)
    if depth > 30:
        raise _bad("schema nesting deeper than 30 at " + where)
    if "type" in s and s["type"] not in _TYPES:
        raise _bad("type %r at %s" % (s["type"], where),
                   "Invalid value at '%s.type' (type.googleapis.com/google.cloud.aiplatform.v1.Type), \"%s\""
                   % (where, s["type"]))
    if "enum" in s and not all(isinstance(e, str) for e in s["enum"]):
        raise _bad("non-string enum value at " + where,
                   "Invalid value at '%s.enum' (TYPE_STRING)" % where)
    if "required" in s and not all(isinstance(e, str) for e in s["required"]):
        raise _bad("non-string required entry at " + where)
    for k, sub in (s.get("properties") or {}).items():
        _check_schema(sub, "%s.properties[%s].value" % (where, k), depth + 1)
    if "items" in s:
        _check_schema(s["items"], where + ".items", depth + 1)
    for i, sub in enumerate(s.get("anyOf") or []):
        _check_schema(sub, "%s.any_of[%d]" % (where, i), depth + 1)
    if s.get("type") == "OBJECT" and "properties" in s and not s["properties"]:
        raise _bad("OBJECT with empty properties at " + where,
                   "* GenerateContentRequest.%s.properties: should be non-empty for OBJECT type" % where)


def _check_part(p, where):
    _obj(p, where)
    _unknown(p, _PART, where)
    data = [k for k in p if k in _PART_DATA]
    if len(data) != 1:
        raise _bad("part with %d data members at %s" % (len(data), where),
                   "Unable to submit request because it has an empty parts field or a part with several "
                   "data fields.")
    k = data[0]
    if k == "text":
        if not isinstance(p["text"], str) or p["text"] == "":
            raise _bad("empty text at " + where, "Unable to submit request because it has an empty text parameter. "
                       "Add a value to the parameter and try again. Learn more: "
                       "https://cloud.google.com/vertex-ai/generative-ai/docs/model-reference/gemini")
    elif k in ("inlineData", "fileData"):
        blob = _obj(p[k], where + "." + k)
        _unknown(blob, {"mimeType", "data"} if k == "inlineData" else {"mimeType", "fileUri"}, where + "." + k)
        if not blob.get("mimeType"):
            raise _bad("no mimeType at " + where, "Unable to submit request because it has a part without "
                       "a mimeType.")
        if k == "inlineData":
            try:
                base64.b64decode(blob.get("data", ""), validate=True)
            except ValueError:
                raise _bad("inlineData.data is not base64 at " + where,
                           "Invalid value at '%s.inline_data.data' (TYPE_BYTES), Base64 decoding failed" % where)
        elif not blob.get("fileUri"):
            raise _bad("no fileUri at " + where)
    elif k == "functionCall":
        fc = _obj(p[k], where + ".functionCall")
        _unknown(fc, {"name", "args", "id"}, where + ".function_call")
        if not isinstance(fc.get("name"), str) or not fc["name"]:
            raise _bad("functionCall without a name at " + where)
        if "args" in fc:
            _obj(fc["args"], where + ".function_call.args")
    elif k == "functionResponse":
        fr = _obj(p[k], where + ".functionResponse")
        _unknown(fr, {"name", "response", "id", "parts", "willContinue", "scheduling"}, where + ".function_response")
        if not isinstance(fr.get("name"), str) or not fr["name"]:
            raise _bad("functionResponse without a name at " + where,
                       "* GenerateContentRequest.%s.function_response.name: Name cannot be empty." % where)
        if "response" not in fr:
            raise _bad("functionResponse without a response at " + where)
        _obj(fr["response"], where + ".function_response.response")


def _check_contents(contents):
    if not isinstance(contents, list) or not contents:
        raise _bad("no contents", "Unable to submit request because it must include at least one parts field, "
                   "which describes the prompt input.")
    prev = None  # (role, calls, responses) of the previous content
    for i, c in enumerate(contents):
        where = "contents[%d]" % i
        _obj(c, where)
        _unknown(c, _CONTENT, where)
        role = c.get("role", "user")
        if role not in ("user", "model"):
            raise _bad("role %r at %s" % (role, where), "Please use a valid role: user, model.")
        parts = c.get("parts")
        if not isinstance(parts, list) or not parts:
            raise _bad("no parts at " + where, "Unable to submit request because it must include at least one "
                       "parts field, which describes the prompt input.")
        for j, p in enumerate(parts):
            _check_part(p, "%s.parts[%d]" % (where, j))
        calls = sum(1 for p in parts if "functionCall" in p)
        responses = sum(1 for p in parts if "functionResponse" in p)
        if calls and role != "model":
            raise _bad("functionCall in a %s turn at %s" % (role, where))
        if responses and role != "user":
            raise _bad("functionResponse in a %s turn at %s" % (role, where))
        if calls and (prev is None or prev[0] != "user"):
            raise _bad("function call turn after a model turn at " + where,
                       "Please ensure that function call turn comes immediately after a user turn or after a "
                       "function response turn.")
        if responses:
            if prev is None or prev[1] == 0:
                raise _bad("function response without a function call turn before it at " + where,
                           "Please ensure that function response turn comes immediately after a function call turn.")
            if responses != prev[1]:
                raise _bad("%d function responses for %d calls at %s" % (responses, prev[1], where),
                           "Please ensure that the number of function response parts is equal to the number of "
                           "function call parts of the function call turn.")
        prev = (role, calls, responses)


def _check_tools(body):
    names = set()
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad("tools is not a list")
        for i, t in enumerate(tools):
            _obj(t, "tools[%d]" % i)
            _unknown(t, _TOOL, "tools[%d]" % i)
            for j, d in enumerate(t.get("functionDeclarations") or []):
                where = "tools[%d].function_declarations[%d]" % (i, j)
                _obj(d, where)
                _unknown(d, _DECL, where)
                if not isinstance(d.get("name"), str) or not _FUNC_NAME.match(d["name"]):
                    raise _bad("function name %r at %s" % (d.get("name"), where),
                               "* GenerateContentRequest.%s.name: Invalid function name. Must start with a letter "
                               "or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), "
                               "colons (:) or dashes (-), with a maximum length of 64." % where)
                names.add(d["name"])
                if "parameters" in d:
                    _check_schema(d["parameters"], where + ".parameters")
                    if d["parameters"].get("type") != "OBJECT":
                        raise _bad("parameters of type %r at %s" % (d["parameters"].get("type"), where),
                                   "* GenerateContentRequest.%s.parameters.type: must be OBJECT" % where)
    tc = body.get("toolConfig")
    if tc is not None:
        _unknown(_obj(tc, "tool_config"), {"functionCallingConfig", "retrievalConfig"}, "tool_config")
        fcc = _obj(tc.get("functionCallingConfig", {}), "tool_config.function_calling_config")
        _unknown(fcc, {"mode", "allowedFunctionNames"}, "tool_config.function_calling_config")
        mode = fcc.get("mode", "AUTO")
        if mode not in ("MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"):
            raise _bad("mode %r" % mode)
        allowed = fcc.get("allowedFunctionNames")
        if allowed is not None:
            if mode != "ANY":
                raise _bad("allowedFunctionNames with mode %s" % mode,
                           "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: "
                           "only allowed when mode is ANY")
            for n in allowed:
                if n not in names:
                    raise _bad("allowed function %r is not declared" % n)


def _check_generation(body):
    g = body.get("generationConfig")
    if g is None:
        return
    _unknown(_obj(g, "generation_config"), _GENCFG, "generation_config")
    stops = g.get("stopSequences")
    if stops is not None and (not isinstance(stops, list) or len(stops) > 5
                              or not all(isinstance(s, str) and s for s in stops)):
        raise _bad("stopSequences %r" % (stops,), "The value of stopSequences must have at most 5 non-empty items.")
    for k in ("temperature", "topP"):
        if k in g and not isinstance(g[k], (int, float)):
            raise _bad("%s is not a number" % k)
    for k in ("topK", "maxOutputTokens"):
        if k in g and (not isinstance(g[k], int) or g[k] <= 0):
            raise _bad("%s is not a positive integer" % k)


def check_body(req):
    ct = (req.header("content-type") or "").split(";")[0].strip().lower()
    if ct != "application/json":
        raise _bad("content-type %r" % ct, "Invalid JSON payload received. Unexpected token.")
    try:
        body = json.loads(req.body)
    except ValueError as e:
        raise _bad("body is not JSON: %s" % e, "Invalid JSON payload received. Unexpected token.")
    _unknown(_obj(body, "GenerateContentRequest"), _TOP, "GenerateContentRequest")
    _check_contents(body.get("contents"))
    si = body.get("systemInstruction")
    if si is not None:
        _unknown(_obj(si, "system_instruction"), _CONTENT, "system_instruction")
        for j, p in enumerate(si.get("parts") or []):
            _check_part(p, "system_instruction.parts[%d]" % j)
            if "text" not in p:
                raise _bad("non-text part in systemInstruction")
    _check_tools(body)
    _check_generation(body)
    return body


def check_auth(fake, req):
    auth = req.header("authorization")
    if not auth or not auth.startswith("Bearer ") or not auth[7:].strip():
        raise WireError(401, "Request is missing required authentication credential. Expected OAuth 2 access "
                        "token, login cookie or other valid authentication credential. See "
                        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                        "no Bearer token", [("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"')])
    tok = auth[7:].strip()
    static = getattr(fake, "vertex_static_token", None)
    sa = getattr(fake, "vertex_auth", None)
    if static is not None and tok == static:
        return
    why = sa.token_state(tok) if sa is not None else "unknown access token"
    if why:
        raise WireError(401, _MESSAGES[401], why,
                        [("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", error="invalid_token"')])


def check_target(fake, req, m):
    proj, loc, model = (urllib.parse.unquote(m.group(k)) for k in ("project", "location", "model"))
    if proj != getattr(fake, "vertex_project", "my-proj"):
        raise WireError(403, "Permission 'aiplatform.endpoints.predict' denied on resource "
                        "'//aiplatform.googleapis.com/projects/%s/locations/%s/publishers/google/models/%s' "
                        "(or it may not exist)." % (proj, loc, model), "project %r" % proj)
    if loc != getattr(fake, "vertex_location", "us-central1"):
        raise _bad("location %r" % loc, "Request contains an invalid argument.")
    query = urllib.parse.parse_qs(req.target.split("?", 1)[1]) if "?" in req.target else {}
    if m.group("method") == "streamGenerateContent" and query.get("alt") != ["sse"]:
        raise _bad("streamGenerateContent without alt=sse (the answer would be a JSON array)")
    if m.group("method") == "generateContent" and query:
        raise _bad("query %r on generateContent" % query)
    return proj, loc, model


# ------------------------------------------------------------- answers --

def _usage(b, completion=None, final=True):
    done = b.completion_tokens if completion is None else completion
    u = {"promptTokenCount": b.prompt_tokens, "candidatesTokenCount": done,
         "totalTokenCount": b.prompt_tokens + done, "trafficType": "ON_DEMAND"}
    if b.cached_tokens:
        u["cachedContentTokenCount"] = b.cached_tokens
    if final:
        u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": b.prompt_tokens}]
        u["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": done}]
    return u


def thought_signature(name, args):
    """What Gemini 3 attaches to each functionCall part: opaque base64 that
    must come back with the call. Here a digest of the call (25 bytes, so
    the base64 has padding: the gateway must restore it exactly)."""
    import hashlib
    canon = json.dumps({"name": name, "args": args}, sort_keys=True, separators=(",", ":"))
    return base64.b64encode(hashlib.sha256(b"fake-gemini:" + canon.encode()).digest()[:25]).decode()


def check_signatures(fake, body):
    """Gemini 3's rule: a functionCall part sent back must carry the
    signature it was given (checked when fake.vertex_require_signatures);
    a signature that does not match its call is refused either way."""
    for i, c in enumerate(body.get("contents") or []):
        for j, p in enumerate(c.get("parts") or []):
            fc = p.get("functionCall")
            if fc is None:
                continue
            where = "contents[%d].parts[%d]" % (i, j)
            sig = p.get("thoughtSignature")
            if sig is None:
                if getattr(fake, "vertex_require_signatures", False):
                    raise _bad("functionCall without thoughtSignature at " + where,
                               "Function call is missing a thought_signature in functionCall parts. This is "
                               "required for tools to work correctly.")
                continue
            if sig != thought_signature(fc.get("name"), fc.get("args", {})):
                raise _bad("thoughtSignature %r does not match its call at %s" % (sig, where),
                           "Corrupted thought signature.")


def _calls(b):
    out = []
    for tc in b.tool_calls or []:
        args = json.loads(tc.get("arguments") or "{}")
        out.append({"functionCall": {"name": tc["name"], "args": args},
                    "thoughtSignature": thought_signature(tc["name"], args)})
    return out


def _response(parts, finish, usage, model, rid):
    cand = {"content": {"role": "model", "parts": parts}}
    if finish:
        cand["finishReason"] = finish
        cand["avgLogprobs"] = -0.0421
    return {"candidates": [cand], "usageMetadata": usage, "modelVersion": model,
            "createTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "responseId": rid}


def _pieces(b):
    if b.chunks is not None:
        return list(b.chunks)
    words = b.content.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def stream_events(b, model, rid):
    """The SSE events (kind, bytes) Vertex would send for b."""
    def ev(obj):
        return ("data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\r\n\r\n").encode()

    pieces = [] if b.tool_calls else _pieces(b)
    out, n = [], max(len(pieces), 1)
    for i, p in enumerate(pieces):
        usage = {"promptTokenCount": b.prompt_tokens,
                 "candidatesTokenCount": b.completion_tokens * (i + 1) // (n + 1),
                 "totalTokenCount": b.prompt_tokens + b.completion_tokens * (i + 1) // (n + 1),
                 "trafficType": "ON_DEMAND"}
        out.append(("content", ev(_response([{"text": p}], None, usage, model, rid))))
    if b.tool_calls:  # Gemini sends parallel calls whole, in one chunk
        out.append(("tools", ev(_response(_calls(b), "STOP", _usage(b), model, rid))))
    else:
        out.append(("finish", ev(_response([{"text": ""}], "STOP", _usage(b), model, rid))))
    return out


async def respond(fake, conn, req, b, keep, extra):
    import fakeupstream as fu

    req.wire_error = None
    req.vertex = None
    m = _MODEL_PATH.match(req.path)
    if m is None:
        return await _respond_token(fake, conn, req, keep)
    try:
        check_auth(fake, req)
        proj, loc, model = check_target(fake, req, m)
        body = check_body(req)
        check_signatures(fake, body)
    except WireError as e:
        return await _send_error(fake, conn, req, e, keep)
    req.vertex = {"project": proj, "location": loc, "model": model, "method": m.group("method"), "body": body}
    model_version = b.model or model
    rid = _b64url(secrets.token_bytes(16))
    head_extra = _GOOGLE_HEADERS + extra
    if m.group("method") == "generateContent":
        parts = _calls(b) if b.tool_calls else [{"text": b.content}]
        obj = _response(parts, "STOP", _usage(b), model_version, rid)
        await fake._send(conn, 200, [("Content-Type", b.content_type or "application/json; charset=UTF-8")]
                         + head_extra, json.dumps(obj, indent=2, ensure_ascii=False).encode(), b.chunked, not keep)
        return keep

    head = ["HTTP/1.1 200 OK", "Content-Type: " + (b.content_type or "text/event-stream"),
            "Content-Disposition: attachment", "Transfer-Encoding: chunked"]
    head += ["%s: %s" % kv for kv in head_extra]
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
    n_content = 0
    for kind, ev in stream_events(b, model_version, rid):
        if b.chunk_interval and not await conn.sleep_or_closed(b.chunk_interval):
            return False
        await fake._write(conn, fu._chunk(ev))
        req.sent_events.append(ev)
        if kind != "content":
            continue
        n_content += 1
        if b.disconnect_after is not None and n_content >= b.disconnect_after:
            conn.writer.transport.abort()
            return False
        if b.pause_after is not None and n_content == b.pause_after and b.pause:
            if not await conn.sleep_or_closed(b.pause):
                return False
    await fake._write(conn, b"0\r\n\r\n")
    return keep


def sse_chunks(events):
    """The JSON objects of SSE events the fake sent (for tests)."""
    out = []
    for ev in events:
        for line in ev.decode().split("\r\n"):
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out
