#!/usr/bin/env bash
# umbra overhead benchmark (what `make bench` calls). See bench/README.md.
#
# Side by side in one run, same bodies, interleaved rounds:
#   direct   wrk -> fakeup (fake OpenAI upstream)
#   nginx    wrk -> nginx (plain reverse proxy, bench/nginx.conf.in) -> fakeup
#   umbra    wrk -> umbra (build/umbra or $UMBRA_BIN) -> fakeup
#   portkey  wrk -> Portkey AI gateway (npm @portkey-ai/gateway, node) -> fakeup
# for non-streaming and streaming, concurrency 1 and 64, 1 KB and 200 KB bodies;
# then 512 concurrent paced streams (ttft), then umbra's RSS after 100k and 1M requests.
#
# Environment:
#   BENCH_QUICK=1        ~2-minute smoke run (1 round x 1 s, fewer requests for RSS)
#   BENCH_ROUNDS=N       rounds per cell (default 5)
#   BENCH_DURATION=S     seconds per wrk run (default 2)
#   BENCH_TARGETS="direct nginx umbra portkey"   subset of targets
#   BENCH_SKIP_RSS=1 / BENCH_SKIP_TTFT=1
#   BENCH_RSS_MAX_S=S    time bound for the RSS phase (default 200)
#   BENCH_PORT_BASE=P    first of the loopback ports used (default 18100)
#   UMBRA_BIN=path       umbra binary (default build/umbra)
#   BENCH_OUT=file       markdown output (default bench/results/latest.md)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${BENCH_ROUNDS:-1}; DUR=${BENCH_DURATION:-1}
    RSS_N1=${BENCH_RSS_N1:-10000}; RSS_N2=${BENCH_RSS_N2:-100000}; RSS_MAX_S=${BENCH_RSS_MAX_S:-40}
    TTFT_REPS=${BENCH_TTFT_REPS:-1}
else
    ROUNDS=${BENCH_ROUNDS:-5}; DUR=${BENCH_DURATION:-2}
    RSS_N1=${BENCH_RSS_N1:-100000}; RSS_N2=${BENCH_RSS_N2:-1000000}; RSS_MAX_S=${BENCH_RSS_MAX_S:-200}
    TTFT_REPS=${BENCH_TTFT_REPS:-3}
fi
TARGETS=${BENCH_TARGETS:-"direct nginx umbra portkey"}
WORKERS=${BENCH_WORKERS:-2}
UMBRA_BIN=${UMBRA_BIN:-$ROOT/build/umbra}
OUT=${BENCH_OUT:-$BENCH/results/latest.md}
TTFT_STREAMS=${BENCH_TTFT_STREAMS:-512}
NGINX=${NGINX:-/usr/sbin/nginx}

# the tree the umbra binary was (presumably) built from, read now, before a long run
UMBRA_COMMIT=$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo none)
WORK=$(mktemp -d /tmp/umbra-bench.XXXXXX)
BENCH_NAME=bench
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
BASE=$(bench_port_base "${BENCH_PORT_BASE:-18100}" 0 1 10 11 20 21 30)
P_FAKE=$BASE; P_PACED=$((BASE + 1)); P_NGINX=$((BASE + 10)); P_NGINX_PACED=$((BASE + 11))
P_UMBRA=$((BASE + 20)); P_UMBRA_ALT=$((BASE + 21)); P_PORTKEY=$((BASE + 30))

wait_http() { # url seconds
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        curl -s -o /dev/null -m 1 "$1" && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- build
log "building fakeup and ttft (cc -O2) in $WORK"
cc -O2 -o "$WORK/fakeup" "$BENCH/fakeup.c"
cc -O2 -o "$WORK/ttft" "$BENCH/ttft.c"
mkdir -p "$WORK/bodies" "$WORK/paced" "$(dirname "$OUT")"
python3 "$BENCH/mkbodies.py" "$WORK/bodies" bench-model
python3 "$BENCH/mkbodies.py" "$WORK/paced" bench-paced
RAW="$WORK/raw.jsonl"
: > "$RAW"

# ---------------------------------------------------------------- servers
# fake upstream (fast) and a paced one for time-to-first-token: 40 chunks, 50 ms apart
"$WORK/fakeup" -p "$P_FAKE" -n 16 2> "$WORK/fakeup.log" & PIDS+=($!)
"$WORK/fakeup" -p "$P_PACED" -n 40 -i 50000 2> "$WORK/fakeup-paced.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$P_FAKE/health" 5 || { echo "fakeup did not start" >&2; exit 1; }
wait_http "http://127.0.0.1:$P_PACED/health" 5 || { echo "paced fakeup did not start" >&2; exit 1; }

declare -A URL ALIVE PID_OF
URL[direct]="http://127.0.0.1:$P_FAKE/v1/chat/completions"
ALIVE[direct]=1
PID_OF[direct]=${PIDS[0]}

NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=65536
ulimit -n "$NOFILE" 2>/dev/null || true
if [[ " $TARGETS " == *" nginx "* ]]; then
    mkdir -p "$WORK/nginx"
    sed -e "s#@PREFIX@#$WORK/nginx#g; s#@WORKERS@#$WORKERS#; s#@FAKE_PORT@#$P_FAKE#; s#@FAKE_PACED_PORT@#$P_PACED#" \
        -e "s#@PORT@#$P_NGINX#; s#@PACED_PORT@#$P_NGINX_PACED#; s#@NOFILE@#$NOFILE#; s#@WORKER_CONNS@#$((NOFILE / 2))#" \
        "$BENCH/nginx.conf.in" > "$WORK/nginx/nginx.conf"
    "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" & PIDS+=($!)
    PID_OF[nginx]=$!
    if wait_http "http://127.0.0.1:$P_NGINX/health" 5; then
        URL[nginx]="http://127.0.0.1:$P_NGINX/v1/chat/completions"; ALIVE[nginx]=1
    else
        log "nginx did not start: $(tail -3 "$WORK/nginx/error.log" 2>/dev/null)"; ALIVE[nginx]=0
    fi
fi

UMBRA_NOTE=""
if [[ " $TARGETS " == *" umbra "* ]]; then
    if [ ! -x "$UMBRA_BIN" ]; then
        log "no $UMBRA_BIN; trying make"
        (cd "$ROOT" && make -s >/dev/null 2>&1) || true
    fi
    cat > "$WORK/umbra.yaml" <<EOF
listen: "127.0.0.1:$P_UMBRA"
workers: $WORKERS
log: { level: warn, requests: false }
providers:
  - { name: fake, type: openai, url: "http://127.0.0.1:$P_FAKE" }
  - { name: paced, type: openai, url: "http://127.0.0.1:$P_PACED" }
models:
  - { name: bench-model, provider: fake }
  - { name: bench-paced, provider: paced }
EOF
    ALIVE[umbra]=0
    if [ -x "$UMBRA_BIN" ]; then
        # run a copy, so a rebuild of build/umbra during the run does not touch the process
        cp "$UMBRA_BIN" "$WORK/umbra"
        "$WORK/umbra" serve -c "$WORK/umbra.yaml" > "$WORK/umbra.log" 2>&1 & PIDS+=($!)
        PID_OF[umbra]=$!
        if wait_http "http://127.0.0.1:$P_UMBRA/health" 10 &&
            curl -sf -m 5 -H 'Content-Type: application/json' --data-binary @"$WORK/bodies/nonstream-1k.json" \
                "http://127.0.0.1:$P_UMBRA/v1/chat/completions" -o /dev/null; then
            URL[umbra]="http://127.0.0.1:$P_UMBRA/v1/chat/completions"; ALIVE[umbra]=1
        else
            UMBRA_NOTE="umbra did not answer a chat completion: $(tail -c 300 "$WORK/umbra.log" | tr '\n' ' ')"
            log "$UMBRA_NOTE"
        fi
    else
        UMBRA_NOTE="no umbra binary at $UMBRA_BIN (make failed)"
        log "$UMBRA_NOTE"
    fi
fi

PORTKEY_NOTE=""
PORTKEY_HDRS=(-H "x-portkey-provider: openai" -H "x-portkey-custom-host: http://127.0.0.1:$P_FAKE/v1")
if [[ " $TARGETS " == *" portkey "* ]]; then
    ALIVE[portkey]=0
    PK="$BENCH/node_modules/@portkey-ai/gateway/build/start-server.js"
    if [ ! -f "$PK" ]; then
        log "installing Portkey gateway (npm ci in bench/)"
        (cd "$BENCH" && npm ci --no-audit --no-fund > "$WORK/npm.log" 2>&1) || true
    fi
    if [ -f "$PK" ]; then
        (cd "$(dirname "$PK")" && exec node start-server.js --port="$P_PORTKEY" --headless) > "$WORK/portkey.log" 2>&1 &
        PIDS+=($!); PID_OF[portkey]=$!
        if wait_http "http://127.0.0.1:$P_PORTKEY/" 20 &&
            curl -sf -m 5 -H 'Content-Type: application/json' "${PORTKEY_HDRS[@]}" \
                --data-binary @"$WORK/bodies/stream-1k.json" "http://127.0.0.1:$P_PORTKEY/v1/chat/completions" |
            grep -q 'data: \[DONE\]'; then
            URL[portkey]="http://127.0.0.1:$P_PORTKEY/v1/chat/completions"; ALIVE[portkey]=1
        else
            PORTKEY_NOTE="Portkey did not answer a streaming chat completion: $(tail -c 300 "$WORK/portkey.log" | tr '\n' ' ')"
            log "$PORTKEY_NOTE"
        fi
    else
        PORTKEY_NOTE="npm ci in bench/ failed: $(tail -c 300 "$WORK/npm.log" 2>/dev/null | tr '\n' ' ')"
        log "$PORTKEY_NOTE"
    fi
fi

ACTIVE=()
for t in $TARGETS; do [ "${ALIVE[$t]:-0}" = 1 ] && ACTIVE+=("$t"); done
log "targets: ${ACTIVE[*]} (ports fake=$P_FAKE nginx=$P_NGINX umbra=$P_UMBRA portkey=$P_PORTKEY)"

run_wrk() { # target mode size conc dur -> prints the WRK json line
    local t=$1 mode=$2 size=$3 conc=$4 dur=$5 hdrs=()
    [ "$t" = portkey ] && hdrs=("${PORTKEY_HDRS[@]}")
    BODY_FILE="$WORK/bodies/$mode-$size.json" timeout $((dur + 30)) \
        wrk -t1 -c"$conc" -d"${dur}s" --timeout 10s -s "$BENCH/wrk_post.lua" \
        -H "Authorization: Bearer sk-bench" "${hdrs[@]}" "${URL[$t]}" 2>&1 | sed -n 's/^WRK //p' | tail -1
}

# ---------------------------------------------------------------- warm-up
for t in "${ACTIVE[@]}"; do
    for mode in nonstream stream; do run_wrk "$t" "$mode" 1k 64 1 > /dev/null || true; done
done

# ---------------------------------------------------------------- main matrix
CELLS=()
for mode in nonstream stream; do for size in 1k 200k; do for conc in 1 64; do CELLS+=("$mode $size $conc"); done; done; done
NT=${#ACTIVE[@]}
total=$((ROUNDS * ${#CELLS[@]} * NT))
n=0
T0=$(date +%s)
for ((r = 0; r < ROUNDS; r++)); do
    ci=0
    for cell in "${CELLS[@]}"; do
        read -r mode size conc <<< "$cell"
        for ((k = 0; k < NT; k++)); do
            t=${ACTIVE[$(((k + r + ci) % NT))]} # rotate the order per round and per cell
            n=$((n + 1))
            j=$(run_wrk "$t" "$mode" "$size" "$conc" "$DUR" || true)
            [ -z "$j" ] && j='{"requests":0,"rps":0,"p50_us":0,"p99_us":0,"failed":1}'
            echo "{\"phase\":\"wrk\",\"target\":\"$t\",\"mode\":\"$mode\",\"size\":\"$size\",\"conc\":$conc,\"round\":$r,\"wrk\":$j}" >> "$RAW"
            printf '\r[bench] %d/%d  %-8s %-9s %-4s c=%-3s' "$n" "$total" "$t" "$mode" "$size" "$conc" >&2
        done
        ci=$((ci + 1))
    done
done
echo >&2
log "matrix done in $(($(date +%s) - T0)) s"

# ---------------------------------------------------------------- 512 concurrent streams
if [ -z "${BENCH_SKIP_TTFT:-}" ]; then
    declare -A TURL
    TURL[direct]="http://127.0.0.1:$P_PACED/v1/chat/completions"
    [ "${ALIVE[nginx]:-0}" = 1 ] && TURL[nginx]="http://127.0.0.1:$P_NGINX_PACED/v1/chat/completions"
    [ "${ALIVE[umbra]:-0}" = 1 ] && TURL[umbra]="http://127.0.0.1:$P_UMBRA/v1/chat/completions"
    for ((r = 0; r < TTFT_REPS; r++)); do
        for t in direct nginx umbra; do
            [ -n "${TURL[$t]:-}" ] || continue
            # K keep-alive connections; round 1 warms pools, round 2 is measured;
            # starts spread over 1 s, each stream lasts ~2 s, so all K are open at once
            out=$(timeout 60 "$WORK/ttft" -c "$TTFT_STREAMS" -R 2 -r 1000 -t 15 -b "$WORK/paced/stream-1k.json" \
                -H "Authorization: Bearer sk-bench" "${TURL[$t]}" 2> "$WORK/ttft-$t.err" | sed -n 's/^TTFT //p' || true)
            [ -z "$out" ] && out='{"failed":1}'
            echo "{\"phase\":\"ttft\",\"target\":\"$t\",\"rep\":$r,\"ttft\":$out}" >> "$RAW"
            log "ttft $t: $out"
        done
    done
fi

# ---------------------------------------------------------------- RSS after N requests
proc_kb() { # pid field -> sum over pid and its descendants (kB)
    local pids=("$1") all=() p s=0 v
    while [ ${#pids[@]} -gt 0 ]; do
        p=${pids[0]}; pids=("${pids[@]:1}"); all+=("$p")
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do pids+=("$c"); done
    done
    for p in "${all[@]}"; do
        v=$(awk -v f="$2:" '$1==f {print $2}' /proc/"$p"/status 2>/dev/null || true)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}
if [ -z "${BENCH_SKIP_RSS:-}" ] && [ "${ALIVE[umbra]:-0}" = 1 ]; then
    # the process that served the matrix and the stream test: its peak, then a fresh
    # umbra (same binary, same config) so "after N requests" counts every request it served
    UP=${PID_OF[umbra]}
    echo "{\"phase\":\"rss_matrix\",\"hwm_kb\":$(proc_kb "$UP" VmHWM),\"rss_kb\":$(proc_kb "$UP" VmRSS)}" >> "$RAW"
    kill "$UP" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$UP" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$UP" 2>/dev/null || true
    for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$UP" ] && unset 'PIDS[i]'; done
    "$WORK/umbra" serve -c "$WORK/umbra.yaml" >> "$WORK/umbra.log" 2>&1 & PIDS+=($!)
    UP=$!
    PID_OF[umbra]=$UP
    wait_http "http://127.0.0.1:$P_UMBRA/health" 10 || log "fresh umbra did not come up"
    echo "{\"phase\":\"rss\",\"label\":\"start\",\"requests\":0,\"hwm_kb\":$(proc_kb "$UP" VmHWM),\"rss_kb\":$(proc_kb "$UP" VmRSS)}" >> "$RAW"
    count=0; idx=0; T0=$(date +%s); reached1=0
    MIX=("nonstream 1k 64" "stream 1k 64" "nonstream 200k 64" "nonstream 1k 64" "stream 200k 64")
    while :; do
        el=$(($(date +%s) - T0))
        [ "$el" -ge "$RSS_MAX_S" ] && { log "RSS phase: time bound ${RSS_MAX_S}s reached at $count requests"; break; }
        read -r mode size conc <<< "${MIX[$((idx % ${#MIX[@]}))]}"
        idx=$((idx + 1))
        j=$(run_wrk umbra "$mode" "$size" "$conc" 2 || true)
        c=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<< "$j")
        count=$((count + ${c:-0}))
        # read memory only at the end of a whole cycle of the mix, so every reading
        # follows the same kind of load
        [ $((idx % ${#MIX[@]})) = 0 ] || continue
        echo "{\"phase\":\"rss_trace\",\"requests\":$count,\"hwm_kb\":$(proc_kb "$UP" VmHWM),\"rss_kb\":$(proc_kb "$UP" VmRSS)}" >> "$RAW"
        if [ $reached1 = 0 ] && [ "$count" -ge "$RSS_N1" ]; then
            reached1=1
            echo "{\"phase\":\"rss\",\"label\":\"n1\",\"requests\":$count,\"hwm_kb\":$(proc_kb "$UP" VmHWM),\"rss_kb\":$(proc_kb "$UP" VmRSS)}" >> "$RAW"
            log "RSS after $count requests: $(proc_kb "$UP" VmRSS) kB (peak $(proc_kb "$UP" VmHWM) kB)"
        fi
        [ "$count" -ge "$RSS_N2" ] && break
    done
    echo "{\"phase\":\"rss\",\"label\":\"n2\",\"requests\":$count,\"hwm_kb\":$(proc_kb "$UP" VmHWM),\"rss_kb\":$(proc_kb "$UP" VmRSS)}" >> "$RAW"
    log "RSS after $count requests: $(proc_kb "$UP" VmRSS) kB (peak $(proc_kb "$UP" VmHWM) kB)"
fi
# the same check with 1 KB bodies only (a fresh process again): separates the per-request
# footprint from the 64 x 200 KB bodies in flight of the mix above
if [ -z "${BENCH_SKIP_RSS:-}" ] && [ "${ALIVE[umbra]:-0}" = 1 ]; then
    kill "$UP" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$UP" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$UP" 2>/dev/null || true
    for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$UP" ] && unset 'PIDS[i]'; done
    "$WORK/umbra" serve -c "$WORK/umbra.yaml" >> "$WORK/umbra.log" 2>&1 & PIDS+=($!)
    UP=$!
    PID_OF[umbra]=$UP
    if wait_http "http://127.0.0.1:$P_UMBRA/health" 10; then
        count=0; idx=0; T0=$(date +%s)
        while [ "$count" -lt "$RSS_N1" ] && [ $(($(date +%s) - T0)) -lt 60 ]; do
            mode=nonstream; [ $((idx % 2)) = 1 ] && mode=stream
            idx=$((idx + 1))
            j=$(run_wrk umbra "$mode" 1k 64 2 || true)
            c=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <<< "$j")
            count=$((count + ${c:-0}))
        done
        echo "{\"phase\":\"rss_1k\",\"requests\":$count,\"hwm_kb\":$(proc_kb "$UP" VmHWM),\"rss_kb\":$(proc_kb "$UP" VmRSS)}" >> "$RAW"
        log "RSS (1 KB only) after $count requests: $(proc_kb "$UP" VmRSS) kB (peak $(proc_kb "$UP" VmHWM) kB)"
    fi
fi
# RSS of every proxy at the end of the run, for reference
for t in nginx umbra portkey; do
    [ "${ALIVE[$t]:-0}" = 1 ] || continue
    echo "{\"phase\":\"rss_end\",\"target\":\"$t\",\"hwm_kb\":$(proc_kb "${PID_OF[$t]}" VmHWM),\"rss_kb\":$(proc_kb "${PID_OF[$t]}" VmRSS)}" >> "$RAW"
done

# ---------------------------------------------------------------- report
UMBRA_VER=$("$UMBRA_BIN" --version 2>/dev/null | head -1 || true)
UMBRA_SHA=$(sha256sum "$WORK/umbra" 2>/dev/null | cut -c1-12 || true)
python3 "$BENCH/report.py" "$RAW" \
    --meta "rounds=$ROUNDS" "duration_s=$DUR" "quick=$QUICK" "workers=$WORKERS" \
    "ttft_streams=$TTFT_STREAMS" "rss_n1=$RSS_N1" "rss_n2=$RSS_N2" \
    "started=$(date -u +%Y-%m-%dT%H:%MZ)" "umbra_commit=$UMBRA_COMMIT" \
    "umbra_note=$UMBRA_NOTE" "portkey_note=$PORTKEY_NOTE" "umbra_version=$UMBRA_VER" "umbra_sha=$UMBRA_SHA" > "$OUT"
cp "$RAW" "${OUT%.md}.raw.jsonl"
cat "$OUT"
log "wrote $OUT (raw samples: ${OUT%.md}.raw.jsonl)"
