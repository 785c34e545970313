#!/usr/bin/env python3
"""Turns bench/run.sh's raw samples (JSON lines) into the markdown report.

report.py RAW.jsonl [--meta k=v ...]   -> markdown on stdout

Per cell (mode x body x concurrency x target) the median over rounds of wrk's
p50, p99 and requests/s. "Added" latency is median(target) - median(direct)
from the same run. Ratios use those medians. Targets from issue 2 are checked
at the end and marked met / missed.
"""
import json
import platform
import statistics
import subprocess
import sys
from collections import defaultdict

TARGET_ORDER = ["direct", "nginx", "umbra", "portkey"]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f0(x, unit=""):
    if x is None:
        return "n/a"
    return f"{x:,.0f}{unit}"


def f2(x):
    return "n/a" if x is None else f"{x:.2f}"


def ratio(a, b):
    if a is None or b is None or b <= 0:
        return None
    return a / b


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ncpu = 0
    try:
        import os
        ncpu = len(os.sched_getaffinity(0))
    except Exception:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MiB"
                break
    except OSError:
        pass

    def ver(cmd):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
            return (out.stdout + out.stderr).strip().splitlines()[0]
        except Exception:
            return "?"

    return {
        "cpu": cpu, "cores": ncpu, "mem": mem, "kernel": platform.release(),
        "wrk": ver(["wrk", "-v"]).split(" [")[0], "nginx": ver(["/usr/sbin/nginx", "-v"]).replace("nginx version: ", ""),
        "node": ver(["node", "-v"]),
    }


def main():
    raw = sys.argv[1]
    meta = {}
    if "--meta" in sys.argv:
        for kv in sys.argv[sys.argv.index("--meta") + 1:]:
            k, _, v = kv.partition("=")
            meta[k] = v
    wrk = defaultdict(list)
    ttft = defaultdict(list)
    rss = {}
    rss_end = {}
    rss_matrix = None
    rss_trace = []
    rss_1k = None
    for line in open(raw):
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r["phase"] == "wrk":
            wrk[(r["mode"], r["size"], r["conc"], r["target"])].append(r["wrk"])
        elif r["phase"] == "ttft":
            ttft[r["target"]].append((r["rep"], r["ttft"]))
        elif r["phase"] == "rss":
            rss[r["label"]] = r
        elif r["phase"] == "rss_1k":
            rss_1k = r
        elif r["phase"] == "rss_trace":
            rss_trace.append(r)
        elif r["phase"] == "rss_matrix":
            rss_matrix = r
        elif r["phase"] == "rss_end":
            rss_end[r["target"]] = r

    targets = [t for t in TARGET_ORDER if any(k[3] == t for k in wrk)]
    cells = []
    for mode in ("nonstream", "stream"):
        for size in ("1k", "200k"):
            for conc in (1, 64):
                if any((mode, size, conc, t) in wrk for t in targets):
                    cells.append((mode, size, conc))

    S = {}  # (cell..., target) -> dict(p50, p99, rps, err, n)
    for key, runs in wrk.items():
        ok = [w for w in runs if not w.get("failed")]
        errs = sum(w.get("errors_status", 0) + w.get("errors_connect", 0) + w.get("errors_read", 0)
                   + w.get("errors_write", 0) + w.get("errors_timeout", 0) for w in ok)
        reqs = sum(w.get("requests", 0) for w in ok)
        S[key] = {
            "p50": med([w["p50_us"] for w in ok if w.get("requests")]),
            "p99": med([w["p99_us"] for w in ok if w.get("requests")]),
            "rps": med([w["rps"] for w in ok]) if ok else None,
            "err": errs, "req": reqs, "runs": len(runs), "failed": len(runs) - len(ok),
        }

    def added(cell, t, q):
        a, d = S.get(cell + (t,)), S.get(cell + ("direct",))
        if not a or not d or a[q] is None or d[q] is None:
            return None
        return a[q] - d[q]

    m = machine()
    out = []
    P = out.append
    P("# umbra overhead benchmark — results")
    P("")
    P(f"Machine: {m['cpu']}, {m['cores']} cores, {m['mem']} RAM, Linux {m['kernel']}; "
      f"{m['wrk']}, nginx {m['nginx']}, node {m['node']}. Shared and noisy: figures are medians of "
      f"{meta.get('rounds', '?')} interleaved rounds x {meta.get('duration_s', '?')} s per cell, "
      f"all targets in the same run (rotating order). umbra and nginx: {meta.get('workers', '?')} workers; "
      f"Portkey: one node process. umbra tree at start: {meta.get('umbra_commit', '?')}, binary sha256 {meta.get('umbra_sha', '?')}…; finished {meta.get('started', '?')}."
      + (" **Quick smoke run (BENCH_QUICK=1): not for conclusions.**" if meta.get("quick") == "1" else ""))
    for k in ("umbra_note", "portkey_note"):
        if meta.get(k):
            P("")
            P(f"Note: {meta[k]}")
    P("")
    P("## Latency and throughput (wrk, one thread; latency in µs, full response)")
    P("")
    P("| mode | body | c | target | p50 µs | p99 µs | req/s | added p50 µs | added p99 µs | errors |")
    P("|---|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for cell in cells:
        for t in targets:
            s = S.get(cell + (t,))
            if not s:
                continue
            ap50 = added(cell, t, "p50") if t != "direct" else None
            ap99 = added(cell, t, "p99") if t != "direct" else None
            err = f"{s['err']}" + (f" ({s['failed']} runs failed)" if s["failed"] else "")
            P(f"| {cell[0]} | {cell[1]} | {cell[2]} | {t} | {f0(s['p50'])} | {f0(s['p99'])} | {f0(s['rps'])} | "
              f"{'—' if t == 'direct' else f0(ap50)} | {'—' if t == 'direct' else f0(ap99)} | {err} |")
    P("")

    have_u = "umbra" in targets
    have_n = "nginx" in targets
    checks = []  # (target text, measured text, met bool|None)
    if have_u and have_n:
        P("## umbra against nginx (same run)")
        P("")
        P("| mode | body | c | nginx added p50 / p99 µs | umbra added p50 / p99 µs | umbra/nginx added p50 | "
          "umbra/nginx added p99 | umbra/nginx req/s |")
        P("|---|---|---:|---:|---:|---:|---:|---:|")
        lat_ok_p50, lat_ok_p99, thr_ok = [], [], []
        for cell in cells:
            na50, na99 = added(cell, "nginx", "p50"), added(cell, "nginx", "p99")
            ua50, ua99 = added(cell, "umbra", "p50"), added(cell, "umbra", "p99")
            r50, r99 = ratio(ua50, na50), ratio(ua99, na99)
            nr, ur = S.get(cell + ("nginx",), {}).get("rps"), S.get(cell + ("umbra",), {}).get("rps")
            rr = ratio(ur, nr)
            P(f"| {cell[0]} | {cell[1]} | {cell[2]} | {f0(na50)} / {f0(na99)} | {f0(ua50)} / {f0(ua99)} | "
              f"{f2(r50)} | {f2(r99)} | {f2(rr)} |")
            if cell[2] == 1:
                lat_ok_p50.append((cell, r50, ua50, na50))
                lat_ok_p99.append((cell, r99, ua99, na99))
            else:
                thr_ok.append((cell, rr))
        P("")

        def verdict_lat(rows):
            # met if umbra's added latency <= 1.5 x nginx's in every c=1 cell
            # (an umbra added latency <= 0 counts as met)
            res = []
            for cell, r, ua, na in rows:
                if ua is not None and ua <= 0:
                    res.append(True)
                elif r is None:
                    res.append(None)
                else:
                    res.append(r <= 1.5)
            if not res or any(x is None for x in res):
                return None
            return all(res)

        def txt(rows):
            return "; ".join(f"{c[0][:2] if c[0]=='nonstream' else 'st'} {c[1]}: {f2(r)}" for c, r, *_ in rows)

        checks.append(("added p50 at c=1 ≤ 1.5× nginx's added p50 (every mode/body)",
                       txt(lat_ok_p50).replace("no ", "non-stream ").replace("st ", "stream "), verdict_lat(lat_ok_p50)))
        checks.append(("added p99 at c=1 ≤ 1.5× nginx's added p99 (every mode/body)",
                       txt(lat_ok_p99).replace("no ", "non-stream ").replace("st ", "stream "), verdict_lat(lat_ok_p99)))
        tv = [r for _, r in thr_ok]
        checks.append(("throughput at c=64 ≥ 0.8× nginx's (every mode/body)",
                       "; ".join(f"{'non-stream' if c[0]=='nonstream' else 'stream'} {c[1]}: {f2(r)}" for c, r in thr_ok),
                       None if (not tv or any(r is None for r in tv)) else all(r >= 0.8 for r in tv)))

    if have_u:
        P("## Body size: 200 KB overhead / 1 KB overhead (added p50 over direct)")
        P("")
        P("| mode | c | " + " | ".join(f"{t} 1 KB µs | {t} 200 KB µs | {t} ratio" for t in targets if t != "direct") + " |")
        P("|---|---:|" + "---:|---:|---:|" * len([t for t in targets if t != "direct"]))
        size_rows = []
        for mode in ("nonstream", "stream"):
            for conc in (1, 64):
                cols = []
                for t in targets:
                    if t == "direct":
                        continue
                    a1, a2 = added((mode, "1k", conc), t, "p50"), added((mode, "200k", conc), t, "p50")
                    rr = ratio(a2, a1)
                    cols.append(f"{f0(a1)} | {f0(a2)} | {f2(rr)}")
                    if t == "umbra" and conc == 1:
                        size_rows.append((mode, rr, a1, a2))
                P(f"| {mode} | {conc} | " + " | ".join(cols) + " |")
        P("")
        sv = [r for _, r, _, _ in size_rows]
        checks.append(("200 KB body overhead ≤ 2× the 1 KB overhead (umbra added p50, c=1)",
                       "; ".join(f"{'non-stream' if mo=='nonstream' else 'stream'}: {f0(a1)} → {f0(a2)} µs = {f2(r)}×"
                                 for mo, r, a1, a2 in size_rows),
                       None if (not sv or any(r is None for r in sv)) else all(r <= 2.0 for r in sv)))

    if ttft:
        P(f"## {meta.get('ttft_streams', '512')} concurrent streams (ttft; paced upstream: 40 chunks 50 ms apart, "
          "starts spread over 1 s, second round on warm keep-alive connections measured)")
        P("")
        P("| target | TTFT p50 µs | TTFT p99 µs | TTFT max µs | added p50 µs | added p99 µs | completed | stalls | errors | max gap ms |")
        P("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        byrep = defaultdict(dict)
        for t, reps in ttft.items():
            for rep, v in reps:
                byrep[rep][t] = v
        tstats = {}
        for t in ["direct", "nginx", "umbra"]:
            if t not in ttft:
                continue
            vs = [v for _, v in ttft[t] if not v.get("failed")]
            add50 = med([byrep[rep][t]["p50_us"] - byrep[rep]["direct"]["p50_us"] for rep in byrep
                         if t in byrep[rep] and "direct" in byrep[rep] and not byrep[rep][t].get("failed")
                         and not byrep[rep]["direct"].get("failed")])
            add99 = med([byrep[rep][t]["p99_us"] - byrep[rep]["direct"]["p99_us"] for rep in byrep
                         if t in byrep[rep] and "direct" in byrep[rep] and not byrep[rep][t].get("failed")
                         and not byrep[rep]["direct"].get("failed")])
            st = {
                "p50": med([v["p50_us"] for v in vs]), "p99": med([v["p99_us"] for v in vs]),
                "max": max([v["max_us"] for v in vs]) if vs else None,
                "ok": sum(v["ok"] for v in vs), "streams": sum(v["streams"] for v in vs),
                "stalls": sum(v["stalls"] for v in vs), "errors": sum(v["errors"] for v in vs),
                "gap": max([v["max_gap_ms"] for v in vs]) if vs else None,
                "failed": len(ttft[t]) - len(vs), "add50": add50, "add99": add99,
            }
            tstats[t] = st
            P(f"| {t} | {f0(st['p50'])} | {f0(st['p99'])} | {f0(st['max'])} | "
              f"{'—' if t == 'direct' else f0(add50)} | {'—' if t == 'direct' else f0(add99)} | "
              f"{st['ok']}/{st['streams']} | {st['stalls']} | {st['errors']}"
              f"{' (' + str(st['failed']) + ' runs failed)' if st['failed'] else ''} | {f2(st['gap'])} |")
        P("")
        P("Added TTFT = TTFT(target) − TTFT(direct) of the same repetition, median over repetitions.")
        P("")
        if "umbra" in tstats:
            u = tstats["umbra"]
            checks.append((f"{meta.get('ttft_streams', '512')} concurrent streams held, no stall",
                           f"{u['ok']}/{u['streams']} completed, {u['stalls']} stalls, {u['errors']} errors",
                           u["stalls"] == 0 and u["errors"] == 0 and u["failed"] == 0 and u["ok"] == u["streams"]))
            checks.append(("added time-to-first-token < 250 µs (p50; p99 shown)",
                           f"p50 {f0(u['add50'])} µs, p99 {f0(u['add99'])} µs",
                           None if u["add50"] is None else u["add50"] < 250))

    if rss:
        P("## umbra memory (VmHWM = peak RSS, VmRSS = current; summed over umbra's processes)")
        P("")
        P("| after | requests | VmHWM MiB | VmRSS MiB |")
        P("|---|---:|---:|---:|")
        if rss_matrix:
            P(f"| the matrix and the {meta.get('ttft_streams', '512')}-stream test (the process that served them) | "
              f"all of the above | {rss_matrix['hwm_kb'] / 1024:.1f} | {rss_matrix['rss_kb'] / 1024:.1f} |")
        names = {"start": "a fresh umbra, started (same binary, same config)", "n1": f"≥ {meta.get('rss_n1')} requests",
                 "n2": f"≥ {meta.get('rss_n2')} requests (or time bound)"}
        for k in ("start", "n1", "n2"):
            if k in rss:
                r = rss[k]
                P(f"| {names[k]} | {r['requests']:,} | {r['hwm_kb'] / 1024:.1f} | {r['rss_kb'] / 1024:.1f} |")
        if rss_1k:
            P(f"| another fresh umbra, 1 KB bodies only (non-stream and stream alternating, c=64) | "
              f"{rss_1k['requests']:,} | {rss_1k['hwm_kb'] / 1024:.1f} | {rss_1k['rss_kb'] / 1024:.1f} |")
        P("")
        if rss_trace:
            P("VmRSS / VmHWM MiB at the end of each cycle of the mix: " + ", ".join(
                f"{t['requests'] // 1000}k: {t['rss_kb'] / 1024:.1f}/{t['hwm_kb'] / 1024:.1f}" for t in rss_trace) + ".")
            P("")
        P("The fresh process is driven by wrk at c=64 with 2-s runs rotating over non-stream 1 KB, stream 1 KB, "
          "non-stream 200 KB, non-stream 1 KB, stream 200 KB until the request count is reached (time-bounded); "
          "VmHWM/VmRSS from /proc/PID/status, read at the end of a whole cycle, so every reading follows the same load.")
        P("")
        if "n1" in rss:
            checks.append((f"peak RSS < 30 MB (30·10⁶ B = 28.6 MiB) after {meta.get('rss_n1')} requests",
                           f"VmHWM {rss['n1']['hwm_kb'] / 1024:.1f} MiB", rss["n1"]["hwm_kb"] * 1024 < 30e6))
        if rss_1k:
            checks.append((f"peak RSS < 30 MB after {meta.get('rss_n1')} requests, 1 KB bodies only (fresh process)",
                           f"VmHWM {rss_1k['hwm_kb'] / 1024:.1f} MiB after {rss_1k['requests']:,} requests",
                           rss_1k["hwm_kb"] * 1024 < 30e6 if rss_1k["requests"] >= int(meta.get("rss_n1", "0") or 0) else None))
        if "n1" in rss and "n2" in rss:
            reached = rss["n2"]["requests"] >= int(meta.get("rss_n2", "0") or 0)
            g = (rss["n2"]["rss_kb"] - rss["n1"]["rss_kb"]) / 1024
            gh = (rss["n2"]["hwm_kb"] - rss["n1"]["hwm_kb"]) / 1024
            checks.append((f"no RSS growth between {meta.get('rss_n1')} and {meta.get('rss_n2')} requests (≤ 1 MiB)",
                           f"VmRSS {g:+.1f} MiB, VmHWM {gh:+.1f} MiB over {rss['n2']['requests'] - rss['n1']['requests']:,} requests"
                           + ("" if reached else " (count not reached within the time bound)"),
                           (g <= 1.0 and gh <= 1.0) if (reached and rss["n2"]["requests"] > rss["n1"]["requests"]) else None))
    if rss_end:
        P("RSS at the end of the run: " + ", ".join(
            f"{t} {r['rss_kb'] / 1024:.1f} MiB (peak {r['hwm_kb'] / 1024:.1f})" for t, r in rss_end.items()) + ".")
        P("")

    if checks:
        P("## Targets (issue 2)")
        P("")
        P("| target | measured | verdict |")
        P("|---|---|---|")
        for name, meas, ok in checks:
            v = "n/a" if ok is None else ("**met**" if ok else "**missed**")
            P(f"| {name} | {meas} | {v} |")
        P("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
