#!/usr/bin/env bash
# What governance costs (what `make bench-govern` calls). See bench/README.md,
# "Governance".
#
# One run, one fake upstream (bench/fakeup.c), two umbra processes with the
# same config, auth.mode keys and one identity in one team, except:
#   gov-off  no budget, no rate limit, no audit log
#   gov-on   team and identity budgets (high enough never to refuse), team
#            rate limits (rpm, tpm, likewise), the audit log (fsync interval,
#            checkpoints every 1000 lines) and usage rollups
# 1 KB non-streaming chat bodies with max_tokens, wrk c=64 (one thread,
# bench/wrk_post.lua), the two targets alternating over rounds (order
# rotating); then c=1 with bench/authbench.c alternating in turns of 20.
# The table shows medians over rounds and gov-on / gov-off ratios. Every
# response must be 200: a refusal would mean the caps were in the way.
#
# Environment: BENCH_QUICK=1 (2 rounds, 1-s runs), BENCH_GOVERN_ROUNDS (5),
# BENCH_GOVERN_DURATION (3 s per wrk run), BENCH_GOVERN_CONC (64),
# BENCH_GOVERN_PORT_BASE (18900), BENCH_WORKERS (2), UMBRA_BIN, AUTHBENCH_BIN,
# BENCH_GOVERN_OUT (bench/results/govern-latest.md), BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    ROUNDS=${BENCH_GOVERN_ROUNDS:-2}; DUR=${BENCH_GOVERN_DURATION:-1}; REQS=500
else
    ROUNDS=${BENCH_GOVERN_ROUNDS:-5}; DUR=${BENCH_GOVERN_DURATION:-3}; REQS=2000
fi
CONC=${BENCH_GOVERN_CONC:-64}
WORKERS=${BENCH_WORKERS:-2}
UMBRA_BIN=${UMBRA_BIN:-$ROOT/build/umbra}
AUTHBENCH=${AUTHBENCH_BIN:-$ROOT/build/bench/authbench}
OUT=${BENCH_GOVERN_OUT:-$BENCH/results/govern-latest.md}
COMMIT=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo none)
WORK=$(mktemp -d /tmp/umbra-governbench.XXXXXX)
BENCH_NAME=bench-govern
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
BASE=$(bench_port_base "${BENCH_GOVERN_PORT_BASE:-18900}" 0 1 2) ||
    die "no 3 free ports from ${BENCH_GOVERN_PORT_BASE:-18900} on"
P_FAKE=$BASE; P_OFF=$((BASE + 1)); P_ON=$((BASE + 2))

command -v wrk > /dev/null || die "wrk not found (make bench installs it)"
[ -x "$UMBRA_BIN" ] || die "no umbra binary at $UMBRA_BIN"
[ -x "$AUTHBENCH" ] || die "no authbench at $AUTHBENCH"
cp "$UMBRA_BIN" "$WORK/umbra"
U="$WORK/umbra"
cd "$WORK"
cc -O2 -o fakeup "$BENCH/fakeup.c"
python3 "$BENCH/mkbodies.py" "$WORK" bench-model > /dev/null
python3 - <<'EOF'
import json
b = json.load(open("nonstream-1k.json"))
b["max_tokens"] = 256
open("body.json", "w").write(json.dumps(b))
EOF

common() { # port store
    cat <<EOF
listen: "127.0.0.1:$1"
workers: $WORKERS
log: { level: warn, requests: false }
auth: { mode: keys }
store: "sqlite://$2"
providers:
  - { name: fake, type: openai, url: "http://127.0.0.1:$P_FAKE" }
models:
  - { name: bench-model, provider: fake, price: { input_per_mtok: 2.5, output_per_mtok: 10 } }
EOF
}
{
    common "$P_OFF" off.db
    cat <<EOF
teams: [ { name: bench, models: ["*"] } ]
identities: [ { name: bencher, team: bench } ]
EOF
} > gov-off.yaml
mkdir -p audit
"$U" audit keygen --out audit > /dev/null
{
    common "$P_ON" on.db
    cat <<EOF
teams:
  - name: bench
    models: ["*"]
    budget: { usd: 1000000, period: monthly }
    rate_limit: { rpm: 100000000, tpm: 2000000000 }
identities: [ { name: bencher, team: bench, budget: { usd: 1000000, period: daily } } ]
audit: { path: audit/audit.jsonl, key: audit/audit.key, checkpoint_every: 1000, fsync: interval }
EOF
} > gov-on.yaml
declare -A KEY PORT=([gov-off]=$P_OFF [gov-on]=$P_ON) PID_OF
for t in gov-off gov-on; do
    "$U" check -c "$t.yaml" > "$t.check" 2>&1 || die "umbra check $t: $(head -3 "$t.check")"
    "$U" pki init --dir "pki-$t" > /dev/null
    "$U" pki issue bencher --kind client --team bench --dir "pki-$t" -c "$t.yaml" > /dev/null
    KEY[$t]=$("$U" key create -c "$t.yaml" --identity bencher | tail -1)
done

./fakeup -p "$P_FAKE" 2> fakeup.log & PIDS+=($!)
for t in gov-off gov-on; do
    "$U" serve -c "$t.yaml" > "$t.log" 2>&1 & PIDS+=($!)
    PID_OF[$t]=$!
done
for p in "$P_FAKE" "$P_OFF" "$P_ON"; do
    for _ in $(seq 100); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$p/health" && break; sleep 0.1; done
done
for t in gov-off gov-on; do
    st=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer ${KEY[$t]}" \
        -H 'Content-Type: application/json' --data-binary @body.json "http://127.0.0.1:${PORT[$t]}/v1/chat/completions")
    [ "$st" = 200 ] || die "$t answers $st: $(tail -c 300 "$t.log")"
done

log "$ROUNDS rounds: wrk c=$CONC for ${DUR}s per target, then c=1 x $REQS per target"
: > raw.jsonl
for r in $(seq "$ROUNDS"); do
    order=(gov-off gov-on)
    [ $((r % 2)) = 0 ] && order=(gov-on gov-off)
    for t in "${order[@]}"; do
        line=$(BODY_FILE=body.json timeout 60 wrk -t1 -c"$CONC" -d"${DUR}s" --latency -s "$BENCH/wrk_post.lua" \
            -H "Authorization: Bearer ${KEY[$t]}" "http://127.0.0.1:${PORT[$t]}/v1/chat/completions" |
            sed -n 's/^WRK //p')
        echo "{\"round\":$r,\"phase\":\"c$CONC\",\"target\":\"$t\",\"wrk\":$line}" >> raw.jsonl
    done
    timeout 300 "$AUTHBENCH" req -q -n "$REQS" -w 100 -B 20 -T 250 -b body.json \
        -u "http://127.0.0.1:$P_OFF/v1/chat/completions" -L gov-off -k "${KEY[gov-off]}" \
        -u "http://127.0.0.1:$P_ON/v1/chat/completions" -L gov-on -k "${KEY[gov-on]}" |
        sed "s/^{/{\"round\":$r,\"phase\":\"c1\",/" >> raw.jsonl
    log "round $r/$ROUNDS done"
done
"$U" audit verify audit/audit.jsonl --pubkey audit/audit.pub > verify.out 2>&1 || die "audit verify failed: $(tail -3 verify.out)"

mkdir -p "$(dirname "$OUT")"
python3 - "$OUT" "$COMMIT" "$ROUNDS" "$DUR" "$CONC" "$REQS" "$WORKERS" "$(tail -1 verify.out)" <<'EOF'
import json, os, statistics as st, sys
out, commit, rounds, dur, conc, reqs, workers, verify = sys.argv[1:]
rows = [json.loads(l) for l in open("raw.jsonl") if l.strip()]
wrk = {t: [r for r in rows if r["phase"] != "c1" and r["target"] == t] for t in ("gov-off", "gov-on")}
c1 = {t: [r for r in rows if r["phase"] == "c1" and r["target"] == t] for t in ("gov-off", "gov-on")}
def m(xs): return st.median(xs)
L = ["# bench-govern (%s)\n" % commit,
     "Machine: %d cores, load %s at the end; umbra %s workers each. Shared and noisy: read medians and ratios.\n"
     % (os.cpu_count(), open("/proc/loadavg").read().split()[0], workers),
     "## c=%s, wrk one thread, %s s per run, %s rounds (medians)\n" % (conc, dur, rounds),
     "| target | req/s | p50 µs | p99 µs | non-2xx | vs gov-off (per round) |", "|---|---:|---:|---:|---:|---|"]
for t in ("gov-off", "gov-on"):
    rps = m([r["wrk"]["rps"] for r in wrk[t]])
    ratio = ""
    if t == "gov-on":
        per = [a["wrk"]["rps"] / b["wrk"]["rps"] for a, b in zip(wrk["gov-on"], wrk["gov-off"])]
        ratio = "%.3f (%s)" % (m(per), ", ".join("%.3f" % p for p in per))
    L.append("| %s | %.0f | %.0f | %.0f | %d | %s |" % (t, rps, m([r["wrk"]["p50_us"] for r in wrk[t]]),
             m([r["wrk"]["p99_us"] for r in wrk[t]]), sum(r["wrk"]["errors_status"] for r in wrk[t]), ratio))
L += ["", "## c=1, authbench, %s requests per target and round (medians)\n" % reqs,
      "| target | p50 µs | p99 µs | errors | added p50 vs gov-off µs |", "|---|---:|---:|---:|---|"]
for t in ("gov-off", "gov-on"):
    add = ""
    if t == "gov-on":
        add = "%.1f" % (m([x["p50_us"] for x in c1["gov-on"]]) - m([x["p50_us"] for x in c1["gov-off"]]))
    L.append("| %s | %.1f | %.1f | %d | %s |" % (t, m([x["p50_us"] for x in c1[t]]), m([x["p99_us"] for x in c1[t]]),
             sum(x["errors"] for x in c1[t]), add))
L += ["", "Audit log after the run: `%s`" % verify]
open(out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
EOF
log "report: $OUT"
