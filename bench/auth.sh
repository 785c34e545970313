#!/usr/bin/env bash
# The cost of authentication (what `make bench-auth` calls). See bench/README.md,
# "Cost of authentication".
#
# One run, one fake upstream (bench/fakeup.c), one umbra binary, several umbra
# instances on loopback ports that differ only in TLS and auth:
#   http-none    plain HTTP, auth.mode none                  (baseline for http-keys)
#   http-keys    plain HTTP, auth.mode keys                  (Authorization: Bearer sk-umbra-...)
#   https-none   TLS, no client_ca, auth.mode none           (baseline for the two below)
#   https-mtls   TLS, client_ca + client_auth require, auth.mode certs (client certificate)
#   https-keys   TLS, no client_ca, auth.mode keys
# plus "direct" (the client straight to fakeup) for reference, and two controls:
#   http-none-aa   a second, identical http-none instance (A/A: the noise floor)
#   http-none-hdr  a third one, sent the same Authorization header (ignored)
# Every round starts fresh gateway processes (where the scheduler places an
# instance's threads biases it by a few % for its whole life). Each round is one
# bench/authbench.c process with one keep-alive connection per mode (TLS handshake
# before the measured window) that sends 1 KB non-stream chat completions, one in
# flight at a time (c=1), N per mode, alternating between the modes in turns of 20
# requests per mode (warm: what a gateway serving a steady c=1 stream sees), then a
# second pass alternating request by request (cold: every gateway's caches evicted
# by the 7 other processes between two of its requests). The tables show the median
# over rounds of each round's p50/p99. Then TLS handshakes (connect + handshake, then one
# GET /health): full vs resumed (TLS 1.3 tickets; TLS 1.2 session ids as well),
# without a client certificate (https-none) and with one (https-mtls).
#
# Environment:
#   BENCH_QUICK=1              ~20-second smoke run (2 rounds x 1000 requests, 100 handshakes)
#   BENCH_AUTH_ROUNDS=N        rounds (default 7), each on fresh gateway processes
#   BENCH_AUTH_REQUESTS=N      measured requests per mode and round (default 3000)
#   BENCH_AUTH_HANDSHAKES=N    handshakes per cell and round (default 500)
#   BENCH_AUTH_MODES="..."     subset of: direct http-none http-none-aa http-none-hdr http-keys
#                              https-none https-mtls https-keys
#   BENCH_AUTH_BURST=N         requests per mode per turn (default 20): caches stay warm
#   BENCH_AUTH_COLD=0          skip the second pass with one request per mode per turn
#                              (every gateway cold: 7 other processes ran since its last request)
#   BENCH_AUTH_TLS12=0         skip the TLS 1.2 handshake rows
#   BENCH_AUTH_PORT_BASE=P     first of 8 loopback ports (default 18400; moves up by 50 if taken)
#   BENCH_WORKERS=N            umbra workers (default 2)
#   UMBRA_BIN=path             umbra binary (default build/umbra)
#   BENCH_AUTH_COMMIT=desc     what the report names as the binary's tree (default: git describe here)
#   BENCH_AUTH_OUT=file        markdown output (default bench/results/auth-latest.md)
#   BENCH_KEEP=1               keep the temp dir (configs, PKI, logs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    ROUNDS=${BENCH_AUTH_ROUNDS:-2}; REQS=${BENCH_AUTH_REQUESTS:-1000}; HS_N=${BENCH_AUTH_HANDSHAKES:-100}
else
    ROUNDS=${BENCH_AUTH_ROUNDS:-7}; REQS=${BENCH_AUTH_REQUESTS:-3000}; HS_N=${BENCH_AUTH_HANDSHAKES:-500}
fi
MODES=${BENCH_AUTH_MODES:-"direct http-none http-none-aa http-none-hdr http-keys https-none https-mtls https-keys"}
TLS12=${BENCH_AUTH_TLS12:-1}
BURST=${BENCH_AUTH_BURST:-20}
COLD=${BENCH_AUTH_COLD:-1}
WORKERS=${BENCH_WORKERS:-2}
UMBRA_BIN=${UMBRA_BIN:-$ROOT/build/umbra}
OUT=${BENCH_AUTH_OUT:-$BENCH/results/auth-latest.md}
AUTHBENCH=${AUTHBENCH_BIN:-$ROOT/build/bench/authbench}
STEP_TIMEOUT=120 # seconds, the bound of one authbench call

# the tree the umbra binary was built from (BENCH_AUTH_COMMIT when UMBRA_BIN is built elsewhere)
UMBRA_COMMIT=${BENCH_AUTH_COMMIT:-$(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo none)}
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
WORK=$(mktemp -d /tmp/umbra-authbench.XXXXXX)
BENCH_NAME=bench-auth
# shellcheck source=bench/lib.sh
. "$BENCH/lib.sh"
BASE=$(bench_port_base "${BENCH_AUTH_PORT_BASE:-18400}" 0 1 2 3 4 5 6 7)
declare -A PORT=([direct]=$BASE [http-none]=$((BASE + 1)) [http-keys]=$((BASE + 2))
    [https-none]=$((BASE + 3)) [https-mtls]=$((BASE + 4)) [https-keys]=$((BASE + 5))
    [http-none-aa]=$((BASE + 6)) [http-none-hdr]=$((BASE + 7)))

wait_health() { # port tls(0/1) seconds
    local i scheme=http
    [ "$2" = 1 ] && scheme=https
    for ((i = 0; i < $3 * 10; i++)); do
        curl -s -o /dev/null -m 1 --cacert "$WORK/pki/ca.crt" "$scheme://127.0.0.1:$1/health" && return 0
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------- build
[ -x "$UMBRA_BIN" ] || (cd "$ROOT" && make -s >/dev/null 2>&1) || true
[ -x "$UMBRA_BIN" ] || die "no umbra binary at $UMBRA_BIN"
cp "$UMBRA_BIN" "$WORK/umbra" # a rebuild of build/umbra during the run does not touch it
U="$WORK/umbra"
if [ ! -x "$AUTHBENCH" ] || [ "$BENCH/authbench.c" -nt "$AUTHBENCH" ]; then
    AUTHBENCH="$WORK/authbench"
    cc -O2 -Wall -Wextra -Werror -o "$AUTHBENCH" "$BENCH/authbench.c" -lssl -lcrypto
fi
cc -O2 -o "$WORK/fakeup" "$BENCH/fakeup.c"
mkdir -p "$WORK/bodies" "$(dirname "$OUT")"
python3 "$BENCH/mkbodies.py" "$WORK/bodies" bench-model
BODY="$WORK/bodies/nonstream-1k.json"
RAW="$WORK/raw.jsonl"
: > "$RAW"

# ---------------------------------------------------------------- PKI, store, key
cd "$WORK"
"$U" pki init --dir pki > /dev/null
"$U" pki issue gw --kind gateway --dns localhost --ip 127.0.0.1 --dir pki > /dev/null
common() { # port
    cat <<EOF
listen: "127.0.0.1:$1"
workers: $WORKERS
log: { level: warn, requests: false }
store: "sqlite://$WORK/umbra.db"
providers:
  - { name: fake, type: openai, url: "http://127.0.0.1:${PORT[direct]}" }
models:
  - { name: bench-model, provider: fake }
EOF
}
# the config the CLI uses for the store (builds before 041ad41: `pki issue -c` wanted a tls.client_ca)
{ common "${PORT[https-mtls]}"; echo 'tls: { cert: pki/gw.crt, key: pki/gw.key, client_ca: pki/ca.crt }'; } > cli.yaml
"$U" pki issue benchclient --kind client --dir pki -c cli.yaml > /dev/null
KEY=$("$U" key create -c cli.yaml --identity benchclient --label bench | tail -1)
case "$KEY" in sk-umbra-*) ;; *) die "umbra key create did not print a key: $KEY" ;; esac
CA="$WORK/pki/ca.crt"
CCERT=(-C "$WORK/pki/benchclient.crt" -K "$WORK/pki/benchclient.key")

TLS_PLAIN='tls: { cert: pki/gw.crt, key: pki/gw.key }'
TLS_REQ='tls: { cert: pki/gw.crt, key: pki/gw.key, client_ca: pki/ca.crt, client_auth: require }'
TLS_OPT='tls: { cert: pki/gw.crt, key: pki/gw.key, client_ca: pki/ca.crt, client_auth: optional }'
cfg_for() { # mode variant -> config on stdout
    local m=$1 v=${2:-0}
    common "${PORT[$m]}"
    case $m in
    http-none | http-none-aa | http-none-hdr) echo 'auth: { mode: none }' ;;
    http-keys) echo 'auth: { mode: keys }' ;;
    https-none) echo "$TLS_PLAIN"; echo 'auth: { mode: none }' ;;
    https-keys) echo "$TLS_PLAIN"; echo 'auth: { mode: keys }' ;;
    https-mtls)
        case $v in # 0: the real thing; 1, 2: fallbacks while auth.mode certs is not implemented
        0) echo "$TLS_REQ"; echo 'auth: { mode: certs }' ;;
        1) echo "$TLS_REQ"; echo 'auth: { mode: none }' ;;
        2) echo "$TLS_OPT"; echo 'auth: { mode: none }' ;;
        esac ;;
    esac
}

# ---------------------------------------------------------------- servers
"$WORK/fakeup" -p "${PORT[direct]}" -n 16 2> fakeup.log & PIDS+=($!)
wait_health "${PORT[direct]}" 0 5 || die "fakeup did not start"

declare -A ALIVE NOTE URL TLS_OF CONFIG_NOTE ENFORCED PID_OF
ALIVE[direct]=1; URL[direct]="http://127.0.0.1:${PORT[direct]}/v1/chat/completions"; TLS_OF[direct]=0
start_one() { # mode: start its umbra instance (PID_OF) and wait until it answers
    local m=$1
    "$U" serve -c "$m.yaml" >> "$m.log" 2>&1 & PIDS+=($!)
    PID_OF[$m]=$!
    wait_health "${PORT[$m]}" "${TLS_OF[$m]}" 10
}
stop_one() { # mode: stop its instance, by PID
    local m=$1 p=${PID_OF[$1]:-} i
    [ -n "$p" ] || return 0
    kill "$p" 2> /dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
    for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$p" ] && unset 'PIDS[i]'; done
    PID_OF[$m]=""
}
curl_chat() { # url extra-curl-args... -> http status
    curl -s -o /dev/null -w '%{http_code}' -m 5 --cacert "$CA" -H 'Content-Type: application/json' \
        --data-binary @"$BODY" "$@" || true
}
for m in $MODES; do
    [ "$m" = direct ] && continue
    case $m in http-none | http-none-aa | http-none-hdr | http-keys | https-none | https-mtls | https-keys) ;;
    *) die "unknown mode $m" ;; esac
    ALIVE[$m]=0
    variants=0; [ "$m" = https-mtls ] && variants="0 1 2"
    cfgok=0
    for v in $variants; do
        cfg_for "$m" "$v" > "$m.yaml"
        if msg=$("$U" check -c "$m.yaml" 2>&1); then cfgok=1; break; fi
        msg=$(grep -v '^ ' <<< "$msg" | head -1)
        [ "$v" = 0 ] && NOTE[$m]="not measured: umbra check: ${msg#"$WORK/"}"
    done
    [ $cfgok = 1 ] || { log "$m: ${NOTE[$m]}"; continue; }
    [ "$m" = https-mtls ] && case $v in
        1) CONFIG_NOTE[$m]="auth.mode certs refused by this build; ran client_auth require with auth.mode none" ;;
        2) CONFIG_NOTE[$m]="auth.mode certs and client_auth require refused by this build; ran client_auth optional with auth.mode none" ;;
    esac
    NOTE[$m]=""
    tls=0; [[ $m == https-* ]] && tls=1
    TLS_OF[$m]=$tls
    scheme=http; [ $tls = 1 ] && scheme=https
    URL[$m]="$scheme://127.0.0.1:${PORT[$m]}/v1/chat/completions"
    if ! start_one "$m"; then
        NOTE[$m]="not measured: did not start: $(tail -c 200 "$m.log" | tr '\n' ' ')"; log "$m: ${NOTE[$m]}"; continue
    fi
    # the credentials must be needed (otherwise the mode measures nothing) and must work
    good=(); bad=()
    case $m in
    *-keys) good=(-H "Authorization: Bearer $KEY"); bad=() ;;
    https-mtls) good=(--cert "$WORK/pki/benchclient.crt" --key "$WORK/pki/benchclient.key"); bad=() ;;
    esac
    st=$(curl_chat "${good[@]}" "${URL[$m]}")
    if [ "$st" != 200 ]; then
        NOTE[$m]="not measured: a request with credentials got $st"; log "$m: ${NOTE[$m]}"; continue
    fi
    if [[ $m == *-keys ]] || [ "$m" = https-mtls ]; then
        st0=$(curl_chat "${bad[@]}" "${URL[$m]}")
        if [ "$st0" != 401 ]; then
            ENFORCED[$m]="without credentials: $st0 (not enforced)"
        else
            ENFORCED[$m]="without credentials: 401"
        fi
        if [[ $m == *-keys ]]; then
            st1=$(curl_chat -H "Authorization: Bearer ${KEY%?}a" "${URL[$m]}")
            [ "${KEY: -1}" = a ] && st1=$(curl_chat -H "Authorization: Bearer ${KEY%?}b" "${URL[$m]}")
            ENFORCED[$m]+=", wrong key: $st1"
        fi
        log "$m: with credentials 200, ${ENFORCED[$m]}"
    fi
    ALIVE[$m]=1
done

ACTIVE=()
for m in $MODES; do [ "${ALIVE[$m]:-0}" = 1 ] && ACTIVE+=("$m"); done
log "modes: ${ACTIVE[*]} (ports ${PORT[direct]}..$((BASE + 7))); $ROUNDS rounds x $REQS requests, $HS_N handshakes per cell"
restart_all() { # fresh gateway processes for a round: where the scheduler puts an
    # instance's threads biases it by a few % for its whole life (see the A/A row)
    local m
    for m in "${ACTIVE[@]}"; do [ "$m" = direct ] || stop_one "$m"; done
    for m in "${ACTIVE[@]}"; do
        [ "$m" = direct ] && continue
        start_one "$m" || die "$m did not restart: $(tail -c 300 "$m.log" | tr '\n' ' ')"
    done
}

req_args() { # mode -> authbench target args for that mode
    local m=$1
    echo "-u ${URL[$m]} -L $m"
    [ "${TLS_OF[$m]}" = 1 ] && echo "-A $CA"
    case $m in
    *-keys | http-none-hdr) echo "-k $KEY" ;; # http-none-hdr: the same header, ignored (auth.mode none)
    https-mtls) echo "${CCERT[*]}" ;;
    esac
}
ERRORS=0
cpu_ns() { # pid -> on-CPU ns of all its threads so far (/proc/PID/task/*/schedstat)
    local f a s=0
    for f in /proc/"$1"/task/*/schedstat; do
        read -r a _ < "$f" 2> /dev/null || continue
        s=$((s + a))
    done
    echo "$s"
}
run_req() { # round phase burst: every active mode in one authbench process, in turns of burst requests
    local r=$1 phase=$2 burst=$3 out args=() k m line
    for ((k = 0; k < NA; k++)); do
        m=${ACTIVE[$(((k + r) % NA))]}
        # shellcheck disable=SC2207
        args+=($(req_args "$m"))
    done
    declare -A c0
    for m in "${ACTIVE[@]}"; do [ -n "${PID_OF[$m]:-}" ] && c0[$m]=$(cpu_ns "${PID_OF[$m]}"); done
    out=$(timeout $STEP_TIMEOUT "$AUTHBENCH" req -q -n "$REQS" -w 200 -B "$burst" -T $((STEP_TIMEOUT - 10)) -b "$BODY" \
        "${args[@]}" 2>> authbench-req.err) || { ERRORS=$((ERRORS + 1)); log "round $r: authbench req failed: $(tail -2 authbench-req.err | tr '\n' ' ')"; }
    for m in "${ACTIVE[@]}"; do
        line=$(grep -F "\"target\":\"$m\"" <<< "$out" | head -1 || true)
        [ -z "$line" ] && line='{"failed":1}'
        cpu=null # umbra's CPU per request (warm-up included: same requests)
        [ -n "${c0[$m]:-}" ] && cpu=$((($(cpu_ns "${PID_OF[$m]}") - ${c0[$m]}) / (REQS + 200) / 10))
        [ "$cpu" != null ] && cpu=$(printf '%d.%02d' $((cpu / 100)) $((cpu % 100)))
        echo "{\"phase\":\"$phase\",\"target\":\"$m\",\"round\":$r,\"server_cpu_us\":$cpu,\"r\":$line}" >> "$RAW"
    done
}

# handshake cells: name target tls-version extra-args
HS_CELLS=()
if [ "${ALIVE[https-none]:-0}" = 1 ]; then
    HS_CELLS+=("tls13-full-nocert https-none 1.3 -" "tls13-resumed-nocert https-none 1.3 -r")
    [ "$TLS12" = 1 ] && HS_CELLS+=("tls12-full-nocert https-none 1.2 -" "tls12-resumed-nocert https-none 1.2 -r")
fi
if [ "${ALIVE[https-mtls]:-0}" = 1 ]; then
    HS_CELLS+=("tls13-full-cert https-mtls 1.3 -" "tls13-resumed-cert https-mtls 1.3 -r")
    [ "$TLS12" = 1 ] && HS_CELLS+=("tls12-full-cert https-mtls 1.2 -" "tls12-resumed-cert https-mtls 1.2 -r")
fi
run_hs() { # cell round
    local name t ver extra r=$2 j args
    read -r name t ver extra <<< "$1"
    args=(-u "https://127.0.0.1:${PORT[$t]}" -A "$CA" -V "$ver")
    [ "$extra" = -r ] && args+=(-r)
    [ "$t" = https-mtls ] && args+=("${CCERT[@]}")
    local c0 cpu
    c0=$(cpu_ns "${PID_OF[$t]}")
    j=$(timeout $STEP_TIMEOUT "$AUTHBENCH" hs -q "${args[@]}" -n "$HS_N" -w 5 -T $((STEP_TIMEOUT - 10)) \
        2>> "authbench-hs.err") || { ERRORS=$((ERRORS + 1)); log "$name round $r: authbench failed: $(tail -2 authbench-hs.err | tr '\n' ' ')"; }
    [ -z "$j" ] && j='{"failed":1}'
    cpu=$((($(cpu_ns "${PID_OF[$t]}") - c0) / (HS_N + 5) / 1000)) # µs per connection (warm-up included)
    echo "{\"phase\":\"hs\",\"cell\":\"$name\",\"target\":\"$t\",\"tls\":\"$ver\",\"round\":$r,\"server_cpu_us\":$cpu,\"r\":$j}" >> "$RAW"
}

# ---------------------------------------------------------------- warm-up, then rounds
NA=${#ACTIVE[@]}; NH=${#HS_CELLS[@]}
wargs=()
# shellcheck disable=SC2207
for m in "${ACTIVE[@]}"; do wargs+=($(req_args "$m")); done
timeout $STEP_TIMEOUT "$AUTHBENCH" req -q -q -n 500 -w 0 -b "$BODY" "${wargs[@]}" > /dev/null 2>&1 || true
T0=$(date +%s)
for ((r = 0; r < ROUNDS; r++)); do
    if [ "$r" -gt 0 ]; then
        restart_all
        timeout $STEP_TIMEOUT "$AUTHBENCH" req -q -q -n 300 -w 0 -b "$BODY" "${wargs[@]}" > /dev/null 2>&1 || true
    fi
    run_req "$r" req "$BURST"
    [ "$COLD" = 1 ] && run_req "$r" cold 1
    for ((k = 0; k < NH; k++)); do run_hs "${HS_CELLS[$(((k + r) % NH))]}" "$r"; done
    printf '\r[bench-auth] round %d/%d done (%d s)' $((r + 1)) "$ROUNDS" $(($(date +%s) - T0)) >&2
done
echo >&2
log "measured in $(($(date +%s) - T0)) s"

# ---------------------------------------------------------------- report
META="$WORK/meta.json"
{
    printf '{"started":"%s","commit":"%s","rounds":%s,"requests":%s,"handshakes":%s,"workers":%s,"quick":%s,"burst":%s,' \
        "$STARTED" "$UMBRA_COMMIT" "$ROUNDS" "$REQS" "$HS_N" "$WORKERS" "$QUICK" "$BURST"
    printf '"umbra_version":"%s","umbra_sha":"%s","openssl":"%s","cpu":"%s","ncpu":%s,"load":"%s","notes":{' \
        "$("$U" version 2>/dev/null | head -1 | tr -d '"\\')" "$(sha256sum "$U" | cut -c1-12)" \
        "$(openssl version 2>/dev/null | tr -d '"\\')" \
        "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1 | tr -d '"\\')" "$(nproc)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
    sep=""
    for m in http-none http-none-aa http-none-hdr http-keys https-none https-mtls https-keys; do
        n="${NOTE[$m]:-}${CONFIG_NOTE[$m]:+${CONFIG_NOTE[$m]}}"
        e="${ENFORCED[$m]:-}"
        d=""
        if [ -f "$m.yaml" ]; then # what actually ran, from its config
            d=$(awk '/^tls:/ { t = "TLS"; if ($0 ~ /client_ca/) { t = t ", client_ca"; if (match($0, /client_auth: [a-z]+/)) t = t ", " substr($0, RSTART, RLENGTH) } }
                     /^auth:/ { if (match($0, /mode: [a-z+]+/)) a = "auth." substr($0, RSTART, RLENGTH) }
                     END { if (t == "") t = "HTTP"; print t ", " a }' "$m.yaml")
        fi
        printf '%s"%s":{"note":"%s","enforced":"%s","desc":"%s","in_modes":%s}' "$sep" "$m" "$(tr -d '"\\' <<< "$n")" \
            "$(tr -d '"\\' <<< "$e")" "$d" "$([[ " $MODES " == *" $m "* ]] && echo true || echo false)"
        sep=","
    done
    printf '}}\n'
} > "$META"

python3 - "$RAW" "$META" > "$OUT" <<'PY'
import json, statistics, sys

raw = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
meta = json.load(open(sys.argv[2]))

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def f0(x):
    return "n/a" if x is None else f"{x:,.0f}"

def f1(x):
    return "n/a" if x is None else f"{x:,.1f}"

ORDER = ["direct", "http-none", "http-none-aa", "http-none-hdr", "http-keys", "https-none", "https-mtls", "https-keys"]
BASE = {"http-none-aa": "http-none", "http-none-hdr": "http-none", "http-keys": "http-none",
        "https-none": "http-none", "https-mtls": "https-none", "https-keys": "https-none"}
EXTRA = {"http-none-aa": "; a second, identical instance (A/A control: the noise floor)",
         "http-none-hdr": "; sent the same Bearer header, ignored (the cost of carrying a key)",
         "http-keys": "; Bearer key", "https-keys": "; Bearer key", "https-mtls": "; client cert"}
COMPARE = [("http-keys", "http-none", "target"), ("https-keys", "https-none", "target"),
           ("https-mtls", "https-none", "info"), ("http-keys", "http-none-hdr", "info"),
           ("http-none-hdr", "http-none", "info"), ("http-none-aa", "http-none", "info")]
INFO = {("https-mtls", "https-none"): "mTLS (certs) against TLS without client certificates",
        ("http-keys", "http-none-hdr"): "checking the key, both requests carrying it",
        ("http-none-hdr", "http-none"): "carrying the header, nobody checking it",
        ("http-none-aa", "http-none"): "two identical instances: the noise floor"}

def by_phase(phase):
    d = {}
    for s in raw:
        if s["phase"] == phase:
            d.setdefault(s["target"], []).append(s)
    return d

REQ, COLD = by_phase("req"), by_phase("cold")

def agg(d, m, field):
    return med([s["r"].get(field) for s in d.get(m, []) if not s["r"].get("failed")])

def errs(d, m):
    return sum(s["r"].get("errors", 0) + (1 if s["r"].get("failed") else 0) for s in d.get(m, []))

def nreq(d, m):
    return sum(s["r"].get("n", 0) for s in d.get(m, []))

def paired(d, m, b):  # per round (same authbench process): p50(m) / p50(b)
    by = {}
    for s in d.get(m, []) + d.get(b, []):
        by.setdefault(s["round"], {})[s["target"]] = s["r"].get("p50_us")
    return [by[r][m] / by[r][b] for r in sorted(by) if by[r].get(m) and by[r].get(b)]

def ratio(d, m, b):
    a, c = agg(d, m, "p50_us"), agg(d, b, "p50_us")
    return a / c if a and c else None

o = []
w = o.append
w("## Cost of authentication: results")
w("")
w(f"Run of {meta['started']} on commit `{meta['commit']}` (umbra binary sha256 `{meta['umbra_sha']}…`): "
  f"{meta['rounds']} rounds, each on fresh gateway processes; per round and mode {meta['requests']:,} measured "
  f"requests at c=1 (1 KB non-stream chat completion, one keep-alive connection per mode, one request in flight at a "
  f"time), the modes alternating in turns of {meta['burst']} requests (warm), then again one request at a time "
  f"(cold); {meta['handshakes']} handshakes per cell and round. umbra `workers: {meta['workers']}`. Machine: "
  f"{meta['cpu']}, {meta['ncpu']} cores, shared and noisy (load {meta['load']} at the end); {meta['openssl']}."
  + (" **Quick smoke run: numbers are indicative only.**" if meta["quick"] else ""))
w("")

def latency_table(d, title):
    w(title)
    w("")
    w("| mode | what | p50 µs | p99 µs | mean µs | umbra CPU µs/req | baseline | added p50 µs | p50 ratio | per-round p50 ratios | errors |")
    w("|---|---|---:|---:|---:|---:|---|---:|---:|---|---:|")
    for m in ORDER:
        note = meta["notes"].get(m, {})
        if m != "direct" and not note.get("in_modes", True):
            continue
        if m not in d:
            if m != "direct":
                w(f"| {m} | {note.get('desc') or m} | — | — | — | — | — | — | — | not measured (below) | — |")
            continue
        p50, p99, mean = agg(d, m, "p50_us"), agg(d, m, "p99_us"), agg(d, m, "mean_us")
        cpu = "—" if m == "direct" else f1(med([s.get("server_cpu_us") for s in d[m]]))
        b = BASE.get(m)
        if b and b in d:
            bp = agg(d, b, "p50_us")
            added = f1(p50 - bp) if p50 is not None and bp is not None else "n/a"
            r = ratio(d, m, b)
            rs = f"{r:.3f}" if r else "n/a"
            pr = ", ".join(f"{x:.3f}" for x in paired(d, m, b))
        else:
            b, added, rs, pr = "—", "—", "—", ""
        desc = "client → fakeup (no gateway)" if m == "direct" else (note.get("desc") or m) + EXTRA.get(m, "")
        w(f"| {m} | {desc} | {f1(p50)} | {f1(p99)} | {f1(mean)} | {cpu} | {b} | {added} | {rs} | {pr} | "
          f"{errs(d, m)} of {nreq(d, m) + errs(d, m):,} |")
    w("")

latency_table(REQ, f"### Latency at c=1, warm (turns of {meta['burst']} requests per mode; request written → last "
              "response byte; median over rounds of each round's p50 / p99)")
for m, n in meta["notes"].items():
    bits = [x for x in (n.get("enforced") and f"checked before the run: with credentials 200, {n['enforced']}",
                        n.get("note")) if x]
    if bits:
        w(f"- {m}: " + "; ".join(bits))
w("")

w("### Target: keys add < 5 % to p50 latency at c=1")
w("")
w("| comparison | warm: p50 ratio (median of per-round) | cold: p50 ratio (median of per-round) | verdict (warm) |")
w("|---|---:|---:|---|")
for m, b, kind in COMPARE:
    if not (m in REQ and b in REQ):
        if kind == "target":
            w(f"| {m} vs {b} | n/a | n/a | **not measured** |")
        continue
    rw, rc = ratio(REQ, m, b), ratio(COLD, m, b)
    cell = lambda d, r: "n/a" if r is None else f"{r:.3f} ({med(paired(d, m, b)):.3f})"
    verdict = f"**{'PASS' if rw < 1.05 else 'MISS'}**" if kind == "target" else f"for reading: {INFO[(m, b)]}"
    w(f"| {m} vs {b} | {cell(REQ, rw)} | {cell(COLD, rc)} | {verdict} |")
w("")

if COLD:
    latency_table(COLD, "### Latency at c=1, cold (one request per mode per turn: between two requests to one gateway "
                  "the 7 other processes ran)")

hs = {}
for s in raw:
    if s["phase"] == "hs":
        hs.setdefault(s["cell"], []).append(s)
if hs:
    w("### TLS handshake (connect + handshake, client side; then one GET /health, not timed; median over rounds)")
    w("")
    w("| TLS | handshake | client cert | target | p50 µs | p99 µs | mean µs | umbra CPU µs/conn | reused | errors |")
    w("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    order = ["tls13-full-nocert", "tls13-resumed-nocert", "tls13-full-cert", "tls13-resumed-cert",
             "tls12-full-nocert", "tls12-resumed-nocert", "tls12-full-cert", "tls12-resumed-cert"]
    for cell in order:
        if cell not in hs:
            continue
        ss = [s for s in hs[cell] if not s["r"].get("failed")]
        n = sum(s["r"].get("n", 0) for s in ss)
        reused = sum(s["r"].get("reused", 0) for s in ss)
        e = sum(s["r"].get("errors", 0) for s in ss) + sum(1 for s in hs[cell] if s["r"].get("failed"))
        ver, kind, cert = cell.split("-")
        got = sorted({s["r"].get("tls", "") for s in ss})
        w(f"| {'/'.join(got) or ver} | {kind} | {'yes' if cert == 'cert' else 'no'} | {hs[cell][0]['target']} | "
          f"{f1(med([s['r'].get('p50_us') for s in ss]))} | {f1(med([s['r'].get('p99_us') for s in ss]))} | "
          f"{f1(med([s['r'].get('mean_us') for s in ss]))} | {f0(med([s.get('server_cpu_us') for s in hs[cell]]))} | "
          f"{reused:,}/{n:,} ({(reused / n if n else 0):.0%}) | {e} |")
    w("")
    w("Full: no session offered. Resumed: each connection offers the session (TLS 1.3 ticket, TLS 1.2 session) "
      "received on the previous one; \"reused\" counts SSL_session_reused(). The request latencies above exclude "
      "the handshake (one keep-alive connection per mode, opened before the measured window). umbra CPU: on-CPU time "
      "of the gateway process (all threads, /proc/PID/task/*/schedstat) over the pass divided by its connections or "
      "requests (warm-up included), so it also counts work done after the client's handshake returned (e.g. issuing "
      "TLS 1.3 tickets), the GET /health and the close.")
    w("")
print("\n".join(o))
PY
cp "$RAW" "${OUT%.md}.raw.jsonl"
cat "$OUT"
log "wrote $OUT (raw samples: ${OUT%.md}.raw.jsonl)"
[ "$ERRORS" = 0 ] || { log "$ERRORS authbench runs failed"; exit 1; }
