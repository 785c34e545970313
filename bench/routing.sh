#!/usr/bin/env bash
# What routing costs (what `make bench-routing` calls). See bench/README.md,
# "Routing".
#
# 1. bench/routebench.c: the detectors + heuristic rules per request on 1 KB
#    and 100 KB prompts, and the builtin embedder + semantic query.
# 2. End to end, one run, one umbra (routing on: guard, rules, builtin
#    embedder with its cache off so every routed request embeds), one fake
#    upstream (bench/fakeup.c), 1 KB chat bodies, c=1 with bench/authbench.c
#    alternating in turns of 20 requests between three bodies:
#      explicit   "model": "bench-model" (the guard still scans it)
#      heuristic  "model": "auto", a prompt a rule matches
#      semantic   "model": "auto", a prompt no rule matches: the embedder decides
#    and, for scale, the fake upstream directly.
#    Rounds interleave; the table shows medians over rounds and the p50 each
#    routed body adds over the explicit one.
#
# Environment: BENCH_QUICK=1 (2 rounds x 500), BENCH_ROUTING_ROUNDS (5),
# BENCH_ROUTING_REQUESTS (3000 per body and round), BENCH_ROUTING_PORT_BASE
# (18800), BENCH_WORKERS (2), UMBRA_BIN, AUTHBENCH_BIN, BENCH_ROUTING_OUT
# (bench/results/routing-latest.md), BENCH_KEEP=1 keeps the temp dir.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    ROUNDS=${BENCH_ROUTING_ROUNDS:-2}; REQS=${BENCH_ROUTING_REQUESTS:-500}
else
    ROUNDS=${BENCH_ROUTING_ROUNDS:-5}; REQS=${BENCH_ROUTING_REQUESTS:-3000}
fi
WORKERS=${BENCH_WORKERS:-2}
UMBRA_BIN=${UMBRA_BIN:-$ROOT/build/umbra}
AUTHBENCH=${AUTHBENCH_BIN:-$ROOT/build/bench/authbench}
OUT=${BENCH_ROUTING_OUT:-$BENCH/results/routing-latest.md}
DATA=${BENCH_ROUTING_DATA:-$ROOT/../shared/data/routing-dev.jsonl}
COMMIT=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo none)
WORK=$(mktemp -d /tmp/umbra-routingbench.XXXXXX)
BENCH_NAME=bench-routing
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
BASE=$(bench_port_base "${BENCH_ROUTING_PORT_BASE:-18800}" 0 1) ||
    die "no 2 free ports from ${BENCH_ROUTING_PORT_BASE:-18800} on"
P_FAKE=$BASE; P_UMBRA=$((BASE + 1))

[ -x "$UMBRA_BIN" ] || die "no umbra binary at $UMBRA_BIN"
[ -x "$AUTHBENCH" ] || die "no authbench at $AUTHBENCH (make build/bench/authbench)"
cp "$UMBRA_BIN" "$WORK/umbra"
cd "$WORK"
cc -O2 -o fakeup "$BENCH/fakeup.c"
make -s -C "$ROOT" build/libumbra.a > /dev/null
cc -O2 -std=c11 -D_GNU_SOURCE -I"$ROOT/src" "$BENCH/routebench.c" "$ROOT/build/libumbra.a" \
    -levent_core -levent_pthreads -lcurl -lnghttp2 -lssl -lcrypto -lyaml -lsqlite3 -lpq -lpcre2-8 \
    -lcjson -lm -pthread -o routebench

log "micro: detectors + rules, builtin embedder"
./routebench "$DATA" > micro.md 2> /dev/null

# ---------------------------------------------------------------- config and bodies
cat > umbra.yaml <<EOF
listen: "127.0.0.1:$P_UMBRA"
workers: $WORKERS
log: { level: warn, requests: false }
providers:
  - { name: fake, type: openai, url: "http://127.0.0.1:$P_FAKE" }
models:
  - { name: bench-model, provider: fake, locality: onprem }
  - { name: bench-cloud, provider: fake, locality: cloud }
routing:
  default_route: general
  sensitive: { action: reroute, route: private }
  heuristics:
    rules:
      - { name: code, match: { scope: last_user, keywords: [python, "c++", stack trace, sql] }, route: coding }
      - { name: rules, match: { keywords: [basel, gdpr, mifid, dodd-frank] }, route: regulatory }
  semantic: { embedder: builtin, cache_size: 0 }
  routes:
    - { name: private, model: bench-model, description: "personal or customer data" }
    - { name: coding, model: bench-cloud, examples: ["Fix the failing unit test in the parser",
        "Why does this function return null?", "Refactor the class to remove the global state"] }
    - { name: regulatory, model: bench-cloud, examples: ["What does the liquidity coverage ratio require?",
        "Which reporting obligations apply to investment firms?"] }
    - { name: general, model: bench-cloud, examples: ["Plan the team offsite for next quarter",
        "Write a short announcement for the newsletter"] }
EOF
"$WORK/umbra" check -c umbra.yaml > check.out 2>&1 || die "umbra check: $(head -3 check.out)"
python3 - <<'EOF'
import json
filler = ("Please summarise the quarterly planning notes for the operations team: the "
          "venue shortlist, the agenda for both days, the travel budget and the reminder "
          "email we send three weeks before. Keep the tone friendly and the plan short. ")
def body(model, tail):
    text = (filler * 8)[:1000 - len(tail)] + tail
    b = {"messages": [{"role": "user", "content": text}], "max_tokens": 64}
    if model:
        b["model"] = model
    return json.dumps(b)
open("explicit.json", "w").write(body("bench-model", " Thanks."))
open("heuristic.json", "w").write(body(None, " Also: why does my python job fail?"))
open("semantic.json", "w").write(body(None, " Thanks."))
EOF

# ---------------------------------------------------------------- processes
./fakeup -p "$P_FAKE" -n 16 2> fakeup.log & PIDS+=($!)
"$WORK/umbra" serve -c umbra.yaml > umbra.log 2>&1 & PIDS+=($!)
for p in "$P_FAKE" "$P_UMBRA"; do
    for _ in $(seq 100); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$p/health" && break; sleep 0.1; done
done
U="http://127.0.0.1:$P_UMBRA/v1/chat/completions"
for b in explicit heuristic semantic; do
    m=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' --data-binary @$b.json "$U" |
        tr -d '\r' | awk -F': ' 'tolower($1)=="x-umbra-route-method"{print $2}')
    echo "$b $m" >> methods.txt
done
grep -q "explicit explicit" methods.txt && grep -q "heuristic heuristic" methods.txt &&
    grep -q "semantic semantic" methods.txt || die "bodies do not route as intended: $(tr '\n' ' ' < methods.txt)"

log "end to end: $ROUNDS rounds x $REQS requests per body at c=1"
: > raw.jsonl
for r in $(seq "$ROUNDS"); do
    timeout 600 "$AUTHBENCH" req -q -n "$REQS" -w 200 -B 20 -T 500 \
        -u "http://127.0.0.1:$P_FAKE/v1/chat/completions" -L fakeup -b explicit.json \
        -u "$U" -L explicit -b explicit.json \
        -u "$U" -L heuristic -b heuristic.json \
        -u "$U" -L semantic -b semantic.json |
        sed "s/^{/{\"round\":$r,/" >> raw.jsonl
done

mkdir -p "$(dirname "$OUT")"
python3 - "$OUT" "$COMMIT" "$ROUNDS" "$REQS" "$WORKERS" <<'EOF'
import json, statistics, sys, os
out, commit, rounds, reqs, workers = sys.argv[1:]
rows = [json.loads(l) for l in open("raw.jsonl") if l.strip()]
by = {}
for r in rows:
    by.setdefault(r["target"], []).append(r)
def med(t, k):
    return statistics.median(x[k] for x in by[t])
lines = []
lines.append("# bench-routing (%s)\n" % commit)
lines.append("Machine: %d cores, load %s at the end; umbra %s workers. Shared and noisy: "
             "read medians and ratios.\n" % (os.cpu_count(), open("/proc/loadavg").read().split()[0], workers))
lines.append("## Per request, in process (bench/routebench.c, median of 201 samples)\n")
lines.append(open("micro.md").read())
lines.append("\n## End to end, c=1, 1 KB bodies (%s rounds x %s requests per body, medians over rounds)\n" % (rounds, reqs))
lines.append("| body | p50 µs | p99 µs | mean µs | errors | added p50 vs explicit µs (per round) |")
lines.append("|---|---:|---:|---:|---:|---|")
for t in ("fakeup", "explicit", "heuristic", "semantic"):
    if t not in by:
        continue
    added = ""
    if t in ("heuristic", "semantic"):
        per = []
        for r in sorted({x["round"] for x in by[t]}):
            a = [x for x in by[t] if x["round"] == r][0]["p50_us"]
            e = [x for x in by["explicit"] if x["round"] == r][0]["p50_us"]
            per.append(a - e)
        added = "%.1f (%s)" % (statistics.median(per), ", ".join("%.1f" % p for p in per))
    lines.append("| %s | %.1f | %.1f | %.1f | %d | %s |" % (t, med(t, "p50_us"), med(t, "p99_us"),
                 med(t, "mean_us"), sum(x["errors"] for x in by[t]), added))
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
log "report: $OUT"
