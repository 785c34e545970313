#!/usr/bin/env python3
"""Write deterministic OpenAI chat-completion request bodies for the JSON
micro-benchmark: body_1k.json (~1 KB) and body_200k.json (~200 KB).

English prose with newlines, quotes and backslashes (so the JSON has
escapes) and some multibyte UTF-8 (accents, CJK, emoji), the way real chat
bodies look. Same seed, same bytes: results compare across runs.

usage: gen_bodies.py [OUTDIR]   (default: the current directory)
"""
import json
import os
import random
import sys

WORDS = (
    "the of and to in is that for it as with was on be by this are from at "
    "or an have not which but all they their has more one will can would "
    "model request gateway latency token budget route provider stream "
    "response context window summary document policy team audit cost "
    "please explain how why when where function value result error retry "
    "quickly carefully simple detailed example system user assistant"
).split()
EXTRAS = [
    "caf\u00e9", "na\u00efve", "r\u00e9sum\u00e9", "\u2014", "\u201cquoted\u201d",
    "\u65e5\u672c\u8a9e", "\u00fcber", "\U0001F600", "\"literal quotes\"",
    "C:\\path\\to\\file", "tab\there", "\u00a9 2026",
]


def sentence(rng):
    n = rng.randint(6, 18)
    words = []
    for _ in range(n):
        if rng.random() < 0.04:
            words.append(rng.choice(EXTRAS))
        else:
            words.append(rng.choice(WORDS))
    s = " ".join(words)
    return s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!"])


def paragraph(rng, n_sent):
    return " ".join(sentence(rng) for _ in range(n_sent))


def body(target, seed):
    rng = random.Random(seed)
    req = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system",
                      "content": "You are a helpful assistant.\nAnswer briefly."}],
        "temperature": 0.7,
        "max_tokens": 512,
        "stream": True,
        "user": "team-a/alice",
    }
    role = "user"
    while True:
        text = "\n\n".join(paragraph(rng, rng.randint(2, 6))
                           for _ in range(rng.randint(1, 3)))
        req["messages"].append({"role": role, "content": text})
        role = "assistant" if role == "user" else "user"
        out = json.dumps(req, ensure_ascii=False)
        if len(out.encode()) >= target:
            break
    # trim the last message so the body lands close to the target size
    last = req["messages"][-1]
    while len(json.dumps(req, ensure_ascii=False).encode()) > target and \
            len(last["content"]) > 10:
        last["content"] = last["content"][:-1]
    return json.dumps(req, ensure_ascii=False).encode()


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(outdir, exist_ok=True)
    for name, size, seed in (("body_1k.json", 1024, 1),
                             ("body_200k.json", 200 * 1024, 2)):
        data = body(size, seed)
        json.loads(data)  # must stay valid JSON
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
