#!/usr/bin/env python3
"""Deterministic, realistic OpenAI chat bodies for the umbra benchmark.

mkbodies.py OUTDIR [MODEL] writes, for SIZE in 1k and 200k (target sizes
1024 and 204800 bytes, within a few bytes):
  nonstream-SIZE.json   {"model", "messages": [...], "temperature", "max_tokens"}
  stream-SIZE.json      the same with "stream": true and
                        "stream_options": {"include_usage": true}
A conversation of system / user / assistant turns in English with the usual
JSON escapes (quotes, newlines, a little non-ASCII); the 200k body is a long
conversation with a pasted document, as a RAG or coding client sends.
Same seed, same bytes on every run.
"""
import json
import random
import sys

WORDS = ("the gateway model request response token budget policy audit team "
         "identity latency stream endpoint provider route upstream record customer "
         "loan account report quarterly revenue summary analysis contract clause "
         "risk compliance data retention encryption key certificate service "
         "function return value error handler buffer parser config deploy region "
         "cluster node memory cache index query table column schema migration").split()
EXTRA = ["naïve", "café", "résumé", "“quoted”", "e.g.", "i.e.", "—", "\"x\"", "{json}", "a\\b"]


def sentence(rng, n):
    ws = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.3:
        ws[rng.randrange(n)] = rng.choice(EXTRA)
    s = " ".join(ws)
    return s[0].upper() + s[1:] + rng.choice([".", ".", "?", "!"])


def paragraph(rng, nsent):
    return " ".join(sentence(rng, rng.randint(6, 18)) for _ in range(nsent))


def body(target, stream, model, seed):
    rng = random.Random(seed)
    msgs = [{"role": "system", "content": "You are a careful assistant for a regulated bank. "
             "Answer concisely, cite the document sections you use, and never reveal customer data."}]
    base = {"model": model, "messages": msgs, "temperature": 0.2, "max_tokens": 512, "user": "bench-user-0042"}
    if stream:
        base["stream"] = True
        base["stream_options"] = {"include_usage": True}
    turn = 0
    cur = len(json.dumps(base, ensure_ascii=False).encode())
    # grow the conversation until close to the target, then pad the last user turn exactly
    while True:
        role = "user" if turn % 2 == 0 else "assistant"
        if target > 8192 and turn == 0:
            content = "Here is the document:\n\n" + "\n\n".join(paragraph(rng, 6) for _ in range(4))
        else:
            content = paragraph(rng, rng.randint(1, 3))
        msg = {"role": role, "content": content}
        if cur + len(json.dumps(msg, ensure_ascii=False).encode()) + 2 > target - 400:
            break
        msgs.append(msg)
        cur += len(json.dumps(msg, ensure_ascii=False).encode()) + 2
        turn += 1
    if msgs[-1]["role"] == "user":
        msgs.append({"role": "assistant", "content": paragraph(rng, 1)})
    last = {"role": "user", "content": "Question: "}
    msgs.append(last)
    filler = paragraph(rng, 40)
    while len(filler) < target:
        filler += " " + paragraph(rng, 40)
    # binary search the filler length that reaches the target size
    lo, hi = 0, len(filler)
    while lo < hi:
        mid = (lo + hi) // 2
        last["content"] = "Question: " + filler[:mid]
        if len(json.dumps(base, ensure_ascii=False).encode()) < target:
            lo = mid + 1
        else:
            hi = mid
    last["content"] = "Question: " + filler[:lo]
    data = json.dumps(base, ensure_ascii=False).encode()
    while len(data) > target:  # a multi-byte char may overshoot by a byte or two
        last["content"] = last["content"][:-1]
        data = json.dumps(base, ensure_ascii=False).encode()
    return data


def main():
    out = sys.argv[1]
    model = sys.argv[2] if len(sys.argv) > 2 else "bench-model"
    for name, size in (("1k", 1024), ("200k", 204800)):
        for stream in (False, True):
            data = body(size, stream, model, seed=size)
            kind = "stream" if stream else "nonstream"
            with open(f"{out}/{kind}-{name}.json", "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
