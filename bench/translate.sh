#!/usr/bin/env bash
# What translation costs (what `make bench-translate` calls). See
# bench/README.md, "Translation".
#
# One run, one fake upstream (bench/fakeup.c, which answers the OpenAI,
# Anthropic Messages and Bedrock Converse formats), one umbra with three
# models on it:
#   pass       type openai: the OpenAI client's body passes through
#   anthropic  type anthropic: translated to Messages and back
#   bedrock    type bedrock: translated to Converse, SigV4-signed, and back
# OpenAI-format non-streaming chat bodies of 1 KB and 200 KB
# (bench/mkbodies.py). c=1: bench/authbench.c alternating the six targets in
# turns of 20 (p50, p99); c=$CONC: wrk per target (req/s), the order
# rotating over rounds. The tables show medians and the ratio to pass.
#
# Environment: BENCH_QUICK=1 (2 rounds, 1-s runs), BENCH_XLATE_ROUNDS (5),
# BENCH_XLATE_DURATION (3 s per wrk run), BENCH_XLATE_CONC (16),
# BENCH_XLATE_PORT_BASE (18950), BENCH_WORKERS (2), UMBRA_BIN, AUTHBENCH_BIN,
# BENCH_XLATE_OUT (bench/results/translate-latest.md), BENCH_KEEP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    ROUNDS=${BENCH_XLATE_ROUNDS:-2}; DUR=${BENCH_XLATE_DURATION:-1}; REQS=300
else
    ROUNDS=${BENCH_XLATE_ROUNDS:-5}; DUR=${BENCH_XLATE_DURATION:-3}; REQS=1000
fi
CONC=${BENCH_XLATE_CONC:-16}
WORKERS=${BENCH_WORKERS:-2}
UMBRA_BIN=${UMBRA_BIN:-$ROOT/build/umbra}
AUTHBENCH=${AUTHBENCH_BIN:-$ROOT/build/bench/authbench}
OUT=${BENCH_XLATE_OUT:-$BENCH/results/translate-latest.md}
COMMIT=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo none)
WORK=$(mktemp -d /tmp/umbra-xlatebench.XXXXXX)
BENCH_NAME=bench-translate
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
BASE=$(bench_port_base "${BENCH_XLATE_PORT_BASE:-18950}" 0 1) ||
    die "no 2 free ports from ${BENCH_XLATE_PORT_BASE:-18950} on"
P_FAKE=$BASE; P_GW=$((BASE + 1))

command -v wrk > /dev/null || die "wrk not found (make bench installs it)"
[ -x "$UMBRA_BIN" ] || die "no umbra binary at $UMBRA_BIN"
[ -x "$AUTHBENCH" ] || die "no authbench at $AUTHBENCH"
cp "$UMBRA_BIN" "$WORK/umbra"
U="$WORK/umbra"
cd "$WORK"
cc -O2 -o fakeup "$BENCH/fakeup.c"
MODELS=(pass anthropic bedrock)
SIZES=(1k 200k)
for m in "${MODELS[@]}"; do
    mkdir -p "$m"
    python3 "$BENCH/mkbodies.py" "$WORK/$m" "$m" > /dev/null
done

cat > umbra.yaml <<EOF
listen: "127.0.0.1:$P_GW"
workers: $WORKERS
log: { level: warn, requests: false }
providers:
  - { name: p-openai, type: openai, url: "http://127.0.0.1:$P_FAKE" }
  - { name: p-anthropic, type: anthropic, url: "http://127.0.0.1:$P_FAKE", api_key: bench }
  - name: p-bedrock
    type: bedrock
    url: "http://127.0.0.1:$P_FAKE"
    region: us-east-1
    access_key_id: AKIDBENCH
    secret_access_key: benchsecret
models:
  - { name: pass, provider: p-openai }
  - { name: anthropic, provider: p-anthropic, upstream_model: claude-bench }
  - { name: bedrock, provider: p-bedrock, upstream_model: "anthropic.claude-bench-v1:0" }
EOF
"$U" check -c umbra.yaml > check.out 2>&1 || die "umbra check: $(head -3 check.out)"
./fakeup -p "$P_FAKE" 2> fakeup.log & PIDS+=($!)
"$U" serve -c umbra.yaml > umbra.log 2>&1 & PIDS+=($!)
for p in "$P_FAKE" "$P_GW"; do
    for _ in $(seq 100); do curl -s -o /dev/null -m 1 "http://127.0.0.1:$p/health" && break; sleep 0.1; done
done
URL="http://127.0.0.1:$P_GW/v1/chat/completions"
TARGETS=()
for s in "${SIZES[@]}"; do
    for m in "${MODELS[@]}"; do
        f="$m/nonstream-$s.json"
        out=$(curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' --data-binary @"$f" "$URL")
        [ "$(tail -1 <<< "$out")" = 200 ] || die "$m $s answers: $(head -c 300 <<< "$out") $(tail -c 300 umbra.log)"
        grep -q '"chat.completion"' <<< "$out" || die "$m $s: not an OpenAI answer: $(head -c 300 <<< "$out")"
        TARGETS+=(-u "$URL" -L "$m-$s" -b "$f")
    done
done

log "$ROUNDS rounds: c=1 x $REQS per target, then wrk c=$CONC for ${DUR}s per target"
: > raw.jsonl
for r in $(seq "$ROUNDS"); do
    timeout 600 "$AUTHBENCH" req -q -n "$REQS" -w 50 -B 20 -T 250 -b pass/nonstream-1k.json "${TARGETS[@]}" |
        sed "s/^{/{\"round\":$r,\"phase\":\"c1\",/" >> raw.jsonl
    order=("${MODELS[@]}")
    [ $((r % 3)) = 1 ] && order=(anthropic bedrock pass)
    [ $((r % 3)) = 2 ] && order=(bedrock pass anthropic)
    for s in "${SIZES[@]}"; do
        for m in "${order[@]}"; do
            line=$(BODY_FILE="$m/nonstream-$s.json" timeout 60 wrk -t1 -c"$CONC" -d"${DUR}s" --latency \
                -s "$BENCH/wrk_post.lua" "$URL" | sed -n 's/^WRK //p')
            echo "{\"round\":$r,\"phase\":\"wrk\",\"target\":\"$m-$s\",\"wrk\":$line}" >> raw.jsonl
        done
    done
    log "round $r/$ROUNDS done"
done

mkdir -p "$(dirname "$OUT")"
python3 "$BENCH/report_translate.py" "$OUT" "$COMMIT" "$ROUNDS" "$DUR" "$CONC" "$REQS" "$WORKERS" raw.jsonl
log "report: $OUT"
