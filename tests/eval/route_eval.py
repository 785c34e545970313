#!/usr/bin/env python3
"""Routing accuracy on the labelled dev set, through `umbra route --explain`.

    tests/eval/route_eval.py [--data FILE] [--umbra BIN] [--split K] [--errors]

Split: for each route, rows 10*K+1 .. 10*K+10 of that route (file order) are
the route's `examples:` in the config; every other row of the route is
evaluated (40 per route with 50 rows). K=0 is the reported split; other K
show how much the figures depend on which 10 examples were picked.

Variants, one config each, built from tests/eval/routing-eval.yaml:
  heuristics   rules only (their detectors rule included), then default_route
  builtin      the builtin embedder only: the best route by similarity
  cascade      guard + rules + builtin embedder (no classifier: no model server)

Prints accuracy, per-route precision/recall/F1 and a markdown table; exits 1
if the cascade is under 0.85 accuracy on split 0.
"""
import argparse
import collections
import copy
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ROUTES = ["pii", "coding", "regulatory", "fast", "general"]
TARGET = 0.85


def load_yaml_text():
    with open(os.path.join(HERE, "routing-eval.yaml")) as f:
        return f.read()


def yaml_str(s):
    return json.dumps(s, ensure_ascii=False)  # JSON strings are YAML strings


def example_text(row):
    """The intent text of a row: its last user message."""
    for m in reversed(row["messages"]):
        if m["role"] == "user":
            return m["content"]
    return row["messages"][-1]["content"]


def make_config(base, examples, variant, path):
    """Write base with examples: under each route and the variant's layers."""
    lines = base.splitlines()
    out = []
    for ln in lines:
        stripped = ln.strip()
        if variant == "builtin" and (stripped.startswith("sensitive:")):
            continue
        if stripped.startswith("semantic:") and variant == "heuristics":
            out.append("  semantic: { enabled: false }")
            continue
        if stripped.startswith("heuristics:") and variant == "builtin":
            out.append("  heuristics:")
            out.append("    enabled: false")
            continue
        if stripped.startswith("- { name:") and "model:" in stripped and "description:" in stripped:
            name = stripped.split("name:", 1)[1].split(",", 1)[0].strip()
            ex = examples.get(name, [])
            body = stripped[len("- { "):-1].rstrip().rstrip("}").rstrip()
            out.append("    - { %s, examples: [%s] }" % (body, ", ".join(yaml_str(e) for e in ex)))
            continue
        out.append(ln)
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def run_umbra(umbra, cfg, rows):
    inp = "".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows)
    p = subprocess.run([umbra, "route", "-c", cfg, "--explain"], input=inp, capture_output=True,
                       text=True, timeout=600)
    if p.returncode != 0:
        sys.exit("umbra route failed: %s" % p.stderr)
    out = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    if len(out) != len(rows):
        sys.exit("umbra route printed %d lines for %d requests" % (len(out), len(rows)))
    return out


def score(rows, decisions):
    tp, fp, fn = collections.Counter(), collections.Counter(), collections.Counter()
    correct = 0
    errors = []
    for r, d in zip(rows, decisions):
        got, want = d.get("route"), r["route"]
        if got == want:
            correct += 1
            tp[want] += 1
        else:
            fp[got] += 1
            fn[want] += 1
            errors.append((r["id"], want, got, d.get("method")))
    per = {}
    for rt in ROUTES:
        p = tp[rt] / (tp[rt] + fp[rt]) if tp[rt] + fp[rt] else 0.0
        rc = tp[rt] / (tp[rt] + fn[rt]) if tp[rt] + fn[rt] else 0.0
        f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
        per[rt] = (p, rc, f1)
    return correct / len(rows), per, errors


def split(rows, k):
    by = collections.defaultdict(list)
    for r in rows:
        by[r["route"]].append(r)
    examples, test = {}, []
    for rt, rs in by.items():
        examples[rt] = [example_text(r) for r in rs[10 * k:10 * k + 10]]
        test += [r for i, r in enumerate(rs) if not 10 * k <= i < 10 * k + 10]
    test.sort(key=lambda r: r["id"])
    return examples, test


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "routing-dev.jsonl"))
    ap.add_argument("--umbra", default=os.environ.get("UMBRA_BIN", os.path.join(REPO, "build", "umbra")))
    ap.add_argument("--splits", type=int, default=5, help="also report splits 1..N-1")
    ap.add_argument("--errors", action="store_true", help="list misrouted ids of split 0")
    a = ap.parse_args()
    rows = [json.loads(l) for l in open(a.data) if l.strip()]
    base = load_yaml_text()
    results = {}
    with tempfile.TemporaryDirectory() as td:
        for k in range(a.splits):
            examples, test = split(rows, k)
            for variant in ("heuristics", "builtin", "cascade"):
                cfg = os.path.join(td, "%s-%d.yaml" % (variant, k))
                make_config(base, examples, variant, cfg)
                dec = run_umbra(a.umbra, cfg, test)
                results[(variant, k)] = score(test, dec)
    print("split 0: examples = rows 1-10 of each route, %d evaluated" % (len(rows) - 50))
    print()
    print("| variant | accuracy | " + " | ".join("F1 %s" % r for r in ROUTES) + " | accuracy, splits 1-%d |"
          % (a.splits - 1))
    print("|---|---|" + "---|" * len(ROUTES) + "---|")
    for variant in ("heuristics", "builtin", "cascade"):
        acc, per, _ = results[(variant, 0)]
        others = [results[(variant, k)][0] for k in range(1, a.splits)]
        print("| %s | %.3f | %s | %s |" % (variant, acc, " | ".join("%.2f" % per[r][2] for r in ROUTES),
                                        ", ".join("%.3f" % o for o in others)))
    print()
    for variant in ("heuristics", "builtin", "cascade"):
        acc, per, errors = results[(variant, 0)]
        print("%s: accuracy %.3f; " % (variant, acc) +
              "; ".join("%s P %.2f R %.2f" % (r, per[r][0], per[r][1]) for r in ROUTES))
        if a.errors and variant == "cascade":
            for e in errors:
                print("   %s want %s got %s (%s)" % e)
    ok = results[("cascade", 0)][0] >= TARGET
    print("\ncascade accuracy %.3f: %s (target %.2f)" % (results[("cascade", 0)][0],
                                                         "met" if ok else "NOT met", TARGET))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
