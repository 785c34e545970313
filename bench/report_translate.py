#!/usr/bin/env python3
"""The bench-translate report (bench/translate.sh): medians over rounds and
ratios to the pass-through target, from the raw JSON lines of one run."""
import json
import os
import statistics as st
import sys

out, commit, rounds, dur, conc, reqs, workers, raw = sys.argv[1:]
rows = [json.loads(line) for line in open(raw) if line.strip()]


def m(xs):
    return st.median(xs)


def c1(t):
    return [r for r in rows if r["phase"] == "c1" and r["target"] == t]


def wk(t):
    return [r for r in rows if r["phase"] == "wrk" and r["target"] == t]


L = ["# bench-translate (%s)\n" % commit,
     "Machine: %d cores, load %s at the end; umbra %s workers. Shared and noisy: read medians and ratios.\n"
     % (os.cpu_count(), open("/proc/loadavg").read().split()[0], workers),
     "OpenAI client, non-streaming chat; `pass` = openai-type upstream (the body passes through), "
     "`anthropic` / `bedrock` = translated both ways (bedrock also SigV4-signed).\n",
     "## c=1, authbench, %s requests per target and round, %s rounds (medians)\n" % (reqs, rounds),
     "| body | target | p50 µs | p99 µs | errors | added p50 vs pass µs |", "|---|---|---:|---:|---:|---:|"]
for s in ("1k", "200k"):
    base = m([x["p50_us"] for x in c1("pass-" + s)])
    for t in ("pass", "anthropic", "bedrock"):
        xs = c1("%s-%s" % (t, s))
        p50 = m([x["p50_us"] for x in xs])
        L.append("| %s | %s | %.1f | %.1f | %d | %s |" % (s, t, p50, m([x["p99_us"] for x in xs]),
                 sum(x["errors"] for x in xs), "" if t == "pass" else "%.1f" % (p50 - base)))
L += ["", "## c=%s, wrk one thread, %s s per run (medians)\n" % (conc, dur),
      "| body | target | req/s | p50 µs | non-2xx | ÷ pass (per round) |", "|---|---|---:|---:|---:|---|"]
for s in ("1k", "200k"):
    for t in ("pass", "anthropic", "bedrock"):
        xs = wk("%s-%s" % (t, s))
        ratio = ""
        if t != "pass":
            per = [a["wrk"]["rps"] / b["wrk"]["rps"] for a, b in zip(xs, wk("pass-" + s))]
            ratio = "%.3f (%s)" % (m(per), ", ".join("%.2f" % p for p in per))
        L.append("| %s | %s | %.0f | %.0f | %d | %s |" % (s, t, m([x["wrk"]["rps"] for x in xs]),
                 m([x["wrk"]["p50_us"] for x in xs]), sum(x["wrk"]["errors_status"] for x in xs), ratio))
open(out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
