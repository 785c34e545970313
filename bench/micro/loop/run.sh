#!/usr/bin/env bash
# Event-loop decision micro-benchmark (DESIGN.md: "libevent 2.1 or libuv; decide
# once, with a measurement"). Builds a minimal keep-alive HTTP responder on each
# (loop_libevent.c: event_new on raw fds, no bufferevent; loop_libuv.c: uv_tcp_t),
# runs wrk (GET, 700-byte JSON answer) at c=1 and c=64, LOOP_RUNS (3) interleaved
# runs of LOOP_DUR (5) s each, and prints a markdown table of medians: req/s,
# p50/p99 latency, and server CPU time per request (from /proc/PID/stat), which is
# the least noise-sensitive figure on a shared machine.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUNS=${LOOP_RUNS:-3}
DUR=${LOOP_DUR:-5}
PORT=${LOOP_PORT:-18300}
W=$(mktemp -d /tmp/umbra-loop.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
cc -O2 -o "$W/loop_libevent" "$HERE/loop_libevent.c" -levent_core
cc -O2 -o "$W/loop_libuv" "$HERE/loop_libuv.c" -luv
"$W/loop_libevent" "$PORT" 2> "$W/libevent.log" & PIDS+=($!); PID_libevent=$!
"$W/loop_libuv" $((PORT + 1)) 2> "$W/libuv.log" & PIDS+=($!); PID_libuv=$!
sleep 0.5
declare -A P=([libevent]=$PORT [libuv]=$((PORT + 1)))
declare -A PID=([libevent]=$PID_libevent [libuv]=$PID_libuv)
cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
HZ=$(getconf CLK_TCK)
RAW="$W/raw.txt"
: > "$RAW"
for t in libevent libuv; do wrk -t1 -c64 -d1s "http://127.0.0.1:${P[$t]}/" > /dev/null; done # warm-up
for ((r = 0; r < RUNS; r++)); do
    for c in 1 64; do
        order="libevent libuv"; [ $(((r + c) % 2)) = 1 ] && order="libuv libevent"
        for t in $order; do
            c0=$(cpu_ticks "${PID[$t]}")
            out=$(wrk -t1 -c"$c" -d"${DUR}s" --latency "http://127.0.0.1:${P[$t]}/")
            c1=$(cpu_ticks "${PID[$t]}")
            reqs=$(awk '/requests in/ {print $1}' <<< "$out")
            rps=$(awk '/Requests\/sec/ {print $2}' <<< "$out")
            p50=$(awk '$1=="50%" {print $2}' <<< "$out")
            p99=$(awk '$1=="99%" {print $2}' <<< "$out")
            echo "$t $c $rps $p50 $p99 $reqs $((c1 - c0))" >> "$RAW"
            echo "run $r $t c=$c: $rps req/s p50 $p50 p99 $p99 cpu_ticks $((c1 - c0))" >&2
        done
    done
done
python3 - "$RAW" "$HZ" <<'PY'
import sys, statistics
raw, hz = sys.argv[1], int(sys.argv[2])
def us(s):
    for suf, m in (("us", 1), ("ms", 1000), ("s", 1e6)):
        if s.endswith(suf):
            return float(s[:-len(suf)]) * m
    return float(s)
d = {}
for line in open(raw):
    t, c, rps, p50, p99, reqs, ticks = line.split()
    d.setdefault((t, int(c)), []).append((float(rps), us(p50), us(p99), int(reqs), int(ticks)))
print("| loop | c | req/s | p50 µs | p99 µs | server CPU µs/request |")
print("|---|---:|---:|---:|---:|---:|")
for c in (1, 64):
    for t in ("libevent", "libuv"):
        v = d[(t, c)]
        cpu = statistics.median([tk / hz * 1e6 / rq for _, _, _, rq, tk in v if rq])
        print(f"| {t} | {c} | {statistics.median([x[0] for x in v]):,.0f} | {statistics.median([x[1] for x in v]):.0f} | "
              f"{statistics.median([x[2] for x in v]):.0f} | {cpu:.2f} |")
PY
