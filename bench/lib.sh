# bench/lib.sh — sourced by the bench scripts (run.sh, auth.sh, tunnel.sh):
# every process they start is recorded in PIDS and killed by PID on exit,
# logging, and picking a block of free loopback ports.
# Before sourcing, set BENCH_NAME (the log prefix) and WORK (the temp dir).

PIDS=()
bench_cleanup() {
    local p
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
    sleep 0.3
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true
    done
    if [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "$BENCH_NAME: kept $WORK" >&2; fi
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

log() { printf '[%s %(%H:%M:%S)T] %s\n' "$BENCH_NAME" -1 "$*" >&2; }
die() { log "$*"; exit 1; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# bench_port_base BASE OFFSET...: BASE, or BASE+50, +100, ... (8 tries), the
# first for which every BASE+OFFSET is free; printed. Fails when none is.
bench_port_base() {
    local base=$1 ok off
    shift
    for _ in 1 2 3 4 5 6 7 8; do
        ok=1
        for off in "$@"; do port_free $((base + off)) || { ok=0; break; }; done
        [ $ok = 1 ] && break
        base=$((base + 50))
    done
    echo "$base"
    [ $ok = 1 ]
}
