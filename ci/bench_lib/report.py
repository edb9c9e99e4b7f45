"""The report: report.md tables (also printed) from the results of every benchmark."""

import datetime

from .scale_scrape import VTS_ZONE

# Anchors from the issue: nginx 1.28.3, 1 worker, instructions per request under callgrind.
ANCHORS = {
    "return": {"vanilla": 10027, "json_log": 2117, "vts": 2532},
    "proxy": {"vanilla": 33268, "json_log": 3033, "vts": 4954},
}
TARGET_DELTA = 150
AIM_DELTA = 100

KIND_TITLE = {"return": "`return 200`", "proxy": "`proxy_pass` (keepalive upstream)"}
CONFIG_TITLE = {
    "vanilla": "vanilla (module not loaded)",
    "alert": "`status_alert` on the location",
    "full": "`status_alert` with `latency=` and `slo=` + probe + webhook (idle)",
}


def fmt_int(v):
    return f"{v:,.0f}" if v is not None else "n/a"


def fmt_delta(v):
    return f"{v:+,.0f}" if v is not None else "n/a"


def fmt_pct(v):
    return f"{v:+.2f}%" if v is not None else "n/a"


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v:.3f} ms" if v < 10 else f"{v:.1f} ms"


def fmt_bytes(v):
    if v is None:
        return "n/a"
    if v >= 1024 * 1024:
        return f"{v:,} B ({v / 1024 / 1024:.2f} MiB)"
    if v >= 1024:
        return f"{v:,} B ({v / 1024:.1f} KiB)"
    return f"{v:,} B"


def anchors():
    """The ANCHORS in words, for the line under the instructions table."""
    ret, proxy = ANCHORS["return"], ANCHORS["proxy"]

    def pct(part, whole):
        return f"{100 * part / whole:+.0f}%"

    return (f"`return 200` vanilla {ret['vanilla']:,}, JSON access log +{ret['json_log']:,} "
            f"({pct(ret['json_log'], ret['vanilla'])}), nginx-module-vts +{ret['vts']:,} "
            f"({pct(ret['vts'], ret['vanilla'])}); proxy vanilla {proxy['vanilla']:,}, "
            f"JSON log +{proxy['json_log']:,}, VTS +{proxy['vts']:,}")


def report(args, results, errors, elapsed):
    L = []
    mode = "quick (smoke run: tiny numbers, not for quoting)" if args.quick else "full"
    L.append("# nginx-status-alert benchmark")
    L.append("")
    L.append(f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; "
             f"mode: {mode}; build: {args.profile}; run time {elapsed:.0f} s")
    L.append(f"- nginx: {results.get('nginx_version', '?')} (`{args.nginx}`), the same binary for "
             f"vanilla and module runs; {args.cores} CPU(s): {results.get('cpu', '?')}")
    L.append("")

    cg = results.get("callgrind")
    if cg and cg.get("configs", {}).get("full"):
        layouts = cg.get("layouts") or [0]
        L.append(f"## Instructions per request (callgrind, 1 process, `ab -k -n {cg['requests']} -c 4` "
                 f"after {cg['warmup']} warm-up requests, {len(layouts)} heap layouts)")
        L.append("")
        L.append("| location | config | Ir / request | delta vs vanilla | delta outside the allocator | "
                 "allocator calls / request | in the module's .so |")
        L.append("|---|---|---:|---:|---:|---:|---:|")
        for kind in ("return", "proxy"):
            for cfg in ("vanilla", "alert", "full"):
                e = cg["configs"][cfg][kind]
                mod = cfg != "vanilla"
                L.append(f"| {KIND_TITLE[kind]} | {CONFIG_TITLE[cfg]} | {fmt_int(e['per_request'])} | "
                         f"{fmt_delta(e['delta']) if mod else '—'} | "
                         f"{fmt_delta(e['delta_outside_allocator']) if mod else '—'} | "
                         f"{e['allocator_calls']:.2f} | "
                         f"{fmt_int(e['module_ir_per_request']) if mod else '—'} |")
        L.append("")
        L.append("Every figure is the median over the heap layouts below.")
        L.append("")
        ret = {c: cg["configs"][c]["return"] for c in ("alert", "full")}
        extra_calls = max(e["allocator_calls_delta"] for e in ret.values())
        # Without glibc's debug symbols the allocator's internals have no names: nothing is
        # split out, and only the whole delta can be judged.
        split = all(e.get("allocator_per_request", 0) > 0
                    for e in cg["configs"]["vanilla"]["return"]["layouts"])
        if not split:
            worst = max(e["delta"] for e in ret.values())
            basis = ("glibc's malloc.c could not be told apart (no debug symbols: install "
                     "libc6-dbg), so the whole delta counts")
        elif extra_calls > 0.005:
            worst = max(e["delta"] for e in ret.values())
            basis = (f"the module makes {extra_calls:.2f} more allocator calls per request than "
                     f"vanilla, so the whole delta counts")
        else:
            worst = max(e["delta_outside_allocator"] for e in ret.values())
            basis = ("allocator calls per request are vanilla's, so the delta outside the allocator "
                     "counts")
        verdict = ("within the target" if worst <= TARGET_DELTA else "OVER the target")
        if worst <= AIM_DELTA:
            verdict += f" and the aim (+{AIM_DELTA})"
        L.append(f"Target: at most +{TARGET_DELTA} Ir/request on `return 200` (aim +{AIM_DELTA}): "
                 f"worst measured {fmt_delta(worst)} ({basis}), {verdict}. "
                 f"Anchors (nginx 1.28.3): {anchors()}.")
        L.append("")
        L.append("Heap layouts: glibc's malloc serves nginx's request pools from wherever the "
                 "configuration phase left room, and a pool block that lands beside a free chunk costs "
                 "every request a coalesce and a split (about +240 Ir in `_int_malloc` and "
                 "`unlink_chunk`), with or without the module; which layout a run gets depends only on "
                 "the sizes of earlier allocations (the prefix path's length, one more `server` block). "
                 "Every configuration runs in the same layouts (layout N = N inert `server` blocks, run "
                 "directories of one path length). The allocator's instructions swing with the layout "
                 "by hundreds per request in both directions, its calls do not: the delta outside the "
                 "allocator, with the calls compared, is the figure that measures the module. Every "
                 "run, and where its delta goes (self cost by object, minus vanilla's in the same "
                 "layout, Ir/request; allocator = glibc's malloc.c):")
        L.append("")
        L.append("| location | config | layout | Ir / request | vanilla | delta | module .so | nginx | "
                 "libc (not malloc) | allocator | other | allocator calls (module / vanilla) |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for kind in ("return", "proxy"):
            base = {e["layout"]: e for e in cg["configs"]["vanilla"][kind]["layouts"]}
            for cfg in ("alert", "full"):
                for e in cg["configs"][cfg][kind]["layouts"]:
                    g = e["delta_by_object"]
                    L.append(f"| {KIND_TITLE[kind]} | {CONFIG_TITLE[cfg]} | {e['layout']} | "
                             f"{fmt_int(e['per_request'])} | {fmt_int(base[e['layout']]['per_request'])} | "
                             f"{fmt_delta(e['delta'])} | {fmt_delta(g['module'])} | "
                             f"{fmt_delta(g['nginx'])} | {fmt_delta(g['libc'])} | "
                             f"{fmt_delta(g['allocator'])} | {fmt_delta(g['other'])} | "
                             f"{e['allocator_calls']:.2f} / {base[e['layout']]['allocator_calls']:.2f} |")
        L.append("")
        for cfg in ("alert", "full"):
            e = cg["configs"][cfg]["return"]
            if e.get("top_deltas"):
                L.append(f"Largest per-function deltas vs vanilla, `return 200`, {CONFIG_TITLE[cfg]} "
                         f"(layout {e.get('median_layout', 0)}, the median one):")
                L.append("")
                L.append("| Ir / request | function | object |")
                L.append("|---:|---|---|")
                for t in e["top_deltas"]:
                    L.append(f"| {t['per_request']:+,.1f} | `{t['function']}` | {t['object']} |")
                L.append("")
        top = cg["configs"]["full"]["return"].get("top") or []
        if top:
            L.append("Module functions, `return 200`, status_alert + probe + webhook "
                     "(callgrind_annotate self cost):")
            L.append("")
            L.append("| Ir / request | function |")
            L.append("|---:|---|")
            for t in top:
                L.append(f"| {t['per_request']:,.1f} | `{t['function']}` |")
            L.append("")

    tp = results.get("throughput")
    if tp and tp.get("runs"):
        L.append(f"## Throughput ratio (wrk, vanilla and module alternately, {tp['rounds']} rounds of "
                 f"{tp['seconds']} s; module = status_alert + probe + webhook)")
        L.append("")
        L.append("| location | workers | wrk | vanilla req/s (median) | module req/s (median) | "
                 "ratio (median of pairs) | ratio min..max | p99 vanilla / module |")
        L.append("|---|---:|---|---:|---:|---:|---:|---:|")
        for r in tp["runs"]:
            w = f"{r['workers']}{' (pinned)' if r['pinned'] else ''}"
            L.append(f"| {KIND_TITLE[r['kind']]} | {w} | `{r['wrk']}` | {fmt_int(r['vanilla_rps'])} | "
                     f"{fmt_int(r['module_rps'])} | {r['ratio_median']:.3f} | "
                     f"{r['ratio_min']:.3f}..{r['ratio_max']:.3f} | "
                     f"{fmt_ms(r['vanilla_p99_ms'])} / {fmt_ms(r['module_p99_ms'])} |")
        L.append("")

    sc = results.get("scrape")
    if sc and "plain_p99_ms" in sc:
        L.append(f"## Scrape cost ({sc['names']:,} NAMEs, 1 worker, every NAME with 3 status codes)")
        L.append("")
        L.append("| figure | value |")
        L.append("|---|---|")
        L.append(f"| `/status_metrics` (Prometheus), median / max of {sc['scrapes']} | "
                 f"{fmt_ms(sc['prom_ms_median'])} / {fmt_ms(sc['prom_ms_max'])} "
                 f"({sc['prom_bytes']:,} bytes, {sc['prom_lines']:,} lines) |")
        L.append(f"| `/status_metrics?format=json`, median | {fmt_ms(sc['json_ms_median'])} "
                 f"({sc['json_bytes']:,} bytes) |")
        L.append(f"| plain request, same client, median | {fmt_ms(sc['plain_ms_median'])} |")
        L.append(f"| plain requests (wrk -c16), p50 / p99 | {fmt_ms(sc['plain_p50_ms'])} / "
                 f"{fmt_ms(sc['plain_p99_ms'])} ({fmt_int(sc['plain_rps'])} req/s) |")
        L.append(f"| same, while scraped in a loop, p50 / p99 | {fmt_ms(sc['loaded_p50_ms'])} / "
                 f"{fmt_ms(sc['loaded_p99_ms'])} ({fmt_int(sc['loaded_rps'])} req/s) |")
        L.append(f"| scrape loop: scrapes/s, p50 / p99 | {sc['scrapes_per_s']:.1f} /s, "
                 f"{fmt_ms(sc['scrape_loop_p50_ms'])} / {fmt_ms(sc['scrape_loop_p99_ms'])} |")
        L.append("")

    mem = results.get("memory")
    if mem:
        L.append("## Memory")
        L.append("")
        L.append("| figure | value |")
        L.append("|---|---|")
        L.append(f"| shared memory per NAME | {mem['per_name']:,.0f} B |")
        L.append(f"| zone, 1 NAME | {fmt_bytes(mem['zone_1'])} |")
        L.append(f"| zone, {mem['names']:,} NAMEs | {fmt_bytes(mem['zone_n'])} "
                 f"(resident {fmt_bytes(mem['zone_n_rss'])}) |")
        L.append("")
        L.append(f"Method: nginx (`master_process off`) is started with 1 and with {mem['names']:,} "
                 f"NAMEs, and with the same locations without the module; the zone is the one shared "
                 f"mapping (`{mem['zone_1_path'] or 'anonymous'}` in /proc/PID/smaps) that the module "
                 f"configuration has and the vanilla one has not. Per NAME = (zone({mem['names']:,}) - "
                 f"zone(1)) / {mem['names'] - 1:,}; it includes the automatic headroom (an eighth more "
                 f"slots so a reload adding names reuses the zone). Process-private memory (the "
                 f"configuration in nginx's pools) is not reported: per NAME it is smaller than the "
                 f"run-to-run noise of Private_Dirty.")
        L.append("")
        verdict = "within the target" if mem["per_name"] <= 16 * 1024 else "OVER the target"
        L.append(f"Target: at most 16 KiB (16,384 B) of shared memory per NAME with `latency=` and "
                 f"`slo=` set: measured {mem['per_name']:,.0f} B, {verdict}.")
        L.append("")

    pr = results.get("probes")
    if pr and "p99_ratio" in pr:
        n = pr["targets"]
        none, wp = pr["runs"]["none"], pr["runs"]["probes"]

        def thr(t):
            return (f"{t.get('master', '?')} / {t.get('worker', '?')} / {t.get('helper', '—')} "
                    f"({sum(t.values())})")

        def cpu(run, k):
            v = run.get("cpu_ms_per_s", {}).get(k)
            ns = run.get("sched_ms_per_s", {}).get(k)
            if v is None:
                return "n/a"
            us, st = run.get("utime_ms_per_s", {}).get(k), run.get("stime_ms_per_s", {}).get(k)
            split = f" = {us:.1f} user + {st:.1f} sys" if us is not None and st is not None and v else ""
            sched = f"; schedstat {ns:.2f} ms/s" if ns is not None else ""
            return f"{v:.1f} ms/s ({v / 10:.2f} %){split}{sched}"

        L.append(f"## Probes ({n:,} TCP targets at `interval=1s timeout=500ms`, 1 worker)")
        L.append("")
        L.append(f"| figure | without probes | with {n:,} targets |")
        L.append("|---|---:|---:|")
        L.append(f"| OS threads: master / worker / helper (total) | {thr(none['threads'])} | "
                 f"{thr(wp['threads'])} |")
        L.append(f"| evaluating worker CPU, idle (utime+stime over {pr['cpu_seconds']} s) | "
                 f"{cpu(none, 'worker')} | {cpu(wp, 'worker')} |")
        L.append(f"| helper CPU, idle | {cpu(none, 'helper')} | {cpu(wp, 'helper')} |")
        L.append(f"| master CPU, idle | {cpu(none, 'master')} | {cpu(wp, 'master')} |")
        L.append(f"| probes per second (connections the targets accepted) | — | "
                 f"{pr['probes_per_s']:.1f} |")
        L.append(f"| status_alert zone (mapping size) | {fmt_bytes(pr['zone_0'])} | "
                 f"{fmt_bytes(pr['zone_n'])} |")
        L.append(f"| worker private memory (Private_Dirty + Private_Clean) | "
                 f"{fmt_bytes(none['worker_private'])} | {fmt_bytes(wp['worker_private'])} |")
        L.append(f"| `return 200` p50 / p99 (wrk {pr['wrk']}, median of {pr['rounds']} x "
                 f"{pr['round_seconds']} s, alternating) | {fmt_ms(pr['p50_none_ms'])} / {fmt_ms(pr['p99_none_ms'])} | "
                 f"{fmt_ms(pr['p50_probes_ms'])} / {fmt_ms(pr['p99_probes_ms'])} |")
        L.append(f"| `return 200` req/s | {fmt_int(pr['rps_none'])} | {fmt_int(pr['rps_probes'])} |")
        L.append("")
        per_probe = None
        a, b = pr.get("sched_worker_probes"), pr.get("sched_worker_none")
        if a is None or b is None:
            a, b = pr["cpu_worker_probes"], pr["cpu_worker_none"]
        if a is not None and b is not None and pr["probes_per_s"]:
            per_probe = (a - b) * 1000.0 / pr["probes_per_s"]
        vt = pr["threads_vanilla"]
        L.append(f"Per target: {pr['per_target']:,.0f} B of shared memory (zone difference / {n:,}, "
                 f"with the spare eighth of slots), {fmt_delta(pr['worker_private_per_target'])} B of the "
                 f"worker's private memory (rough: page-granular); worker CPU per probe "
                 f"{per_probe:.1f} µs (schedstat difference / probes per second). p99 with / without the probes: **{pr['p99_ratio']:.2f}** "
                 f"(ratio of the medians; per round pair {pr['p99_ratio_min']:.2f}..{pr['p99_ratio_max']:.2f}). "
                 f"Vanilla nginx, same configuration without the module: threads {vt.get('master')} / "
                 f"{vt.get('worker')}." if per_probe is not None else
                 f"Per target: {pr['per_target']:,.0f} B of shared memory; p99 ratio {pr['p99_ratio']:.2f}.")
        L.append("")
        L.append(f"Method: {n:,} listening sockets of the bench's own process on 127.0.0.1 (one thread "
                 f"accepts and closes, on core 1 with wrk) are the `server`s of one `upstream`, probed "
                 f"by `status_alert_probe upstream=... scheme=tcp name=targets interval=1s "
                 f"timeout=500ms;` (the upstream form). nginx (master + 1 worker on core 0, "
                 f"`worker_connections {pr['worker_connections']}`, `worker_rlimit_nofile "
                 f"{pr['worker_rlimit_nofile']}`) runs with and without that line side by side, so "
                 f"both see the same machine load; the evaluating worker is the one logging `this "
                 f"process evaluates from now on`, the helper the process of nginx's session named "
                 f"`status-alert`. CPU is measured idle over the same window for both, then wrk "
                 f"rounds alternate between them; the zone is the shared mapping a vanilla nginx "
                 f"with the same configuration does not have.")
        L.append("")

    se = (results.get("scale") or {}).get("evaluation")
    if se:
        base = se[0]
        L.append(f"## Scale: configuration and evaluation (1 worker, `status_alert_interval 1s`, "
                 f"every NAME in its own location)")
        L.append("")
        L.append("| NAMEs | `nginx -t` (module's part) | reload to a new worker | rounds | "
                 "1 ms client of worker 0: p50 / p99 / max | p99 vs "
                 f"{base['names']:,} NAMEs |")
        L.append("|---:|---:|---:|---:|---:|---:|")
        for r in se:
            ratio = r["ping_p99_ms"] / base["ping_p99_ms"] if base["ping_p99_ms"] else float("nan")
            L.append(f"| {r['names']:,} | {r['nginx_t_s']:.3f} s ({r['nginx_t_module_s']:+.3f} s) | "
                     f"{r['reload_s']:.3f} s | {r['eval_rounds']:.0f} | "
                     f"{fmt_ms(r['ping_p50_ms'])} / {fmt_ms(r['ping_p99_ms'])} / "
                     f"{fmt_ms(r['ping_max_ms'])} | {ratio:.2f}x |")
        L.append("")
        L.append("Method: `nginx -t` is timed with and without the module on the same locations "
                 "(best of 3, 1 in a quick run; the module's part is the difference); the reload "
                 "is SIGHUP to the first new worker process in /proc; the client sends "
                 "`GET /ping` (`return 204`) "
                 "every millisecond on one kept-alive connection to the only worker, which "
                 "evaluates every NAME each second in slices (docs/operations.md).")
        L.append("")

    ss = (results.get("scale") or {}).get("scrapes")
    if ss:
        # VTS's rows (if measured) follow the module's of the same count, labelled VTS.
        vts = {r["names"]: r for r in (results["scale"].get("vts_scrapes") or [])}
        base, vts_base = ss[0], vts.get(ss[0]["names"])
        L.append("## Scale: scrapes (1 worker; the first 200 NAMEs with 200, 404 and 503 "
                 "answers; median time, bytes on the wire)")
        L.append("")
        L.append("| NAMEs | traffic | Prometheus | gzip | JSON | gzip | HTML | gzip |")
        L.append("|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in ss:
            n = r["names"]
            lines = [(f"{n:,}", "none", r["without_traffic"]),
                     (f"{n:,}", "200 NAMEs", r["with_traffic"])]
            if n in vts:
                v = vts[n]
                lines += [(f"{n:,} VTS", "none (no keys)", v["without_traffic"]),
                          (f"{n:,} VTS", f"{min(n, 200):,} keys", v["with_traffic"])]
                if n > 200:
                    lines.append((f"{n:,} VTS", f"all {n:,} keys (1 request on {n - 200:,})",
                                  v["all_keys"]))
            for names, label, f in lines:
                cells = []
                for fmt in ("prometheus", "json", "html"):
                    for k in (fmt, f"{fmt}_gzip"):
                        e = f.get(k)
                        if e is None:
                            cells.append("-")
                            continue
                        enc = "" if e["encoding"] == "identity" else f" {e['encoding']}"
                        cells.append(f"{fmt_ms(e['ms'])}, {e['bytes']:,} B{enc}")
                L.append(f"| {names} | {label} | " + " | ".join(cells) + " |")
        L.append("")
        L.append(f"| NAMEs | scrapes run | 1 ms client of the worker: p50 / p99 / max | "
                 f"p99 vs {base['names']:,} NAMEs | zone | worker private memory |")
        L.append("|---:|---:|---:|---:|---:|---:|")
        for r in ss:
            rows = [(f"{r['names']:,}", r, base, fmt_bytes(r["zone_bytes"]))]
            v = vts.get(r["names"])
            if v:
                rows.append((f"{r['names']:,} VTS", v, vts_base,
                             f"{fmt_bytes(v['zone_bytes'])}, used {fmt_bytes(v['zone_used_bytes'])}"))
            for names, x, b, zone in rows:
                ratio = x["ping_p99_ms"] / b["ping_p99_ms"] if b and b["ping_p99_ms"] else float("nan")
                L.append(f"| {names} | {x['scrapes']} | {fmt_ms(x['ping_p50_ms'])} / "
                         f"{fmt_ms(x['ping_p99_ms'])} / {fmt_ms(x['ping_max_ms'])} | {ratio:.2f}x | "
                         f"{zone} | {fmt_bytes(x['worker_private_bytes'])} |")
        L.append("")
        L.append("Method: each format is scraped on a new connection, once to warm up, then "
                 "timed (median of 5, 2 in a quick run), without and with `Accept-Encoding: gzip` "
                 "(the size is what was sent; the encoding is named when it was not identity). "
                 "The client sending `GET /ping` every millisecond runs in its own process while "
                 "this one scrapes Prometheus text and JSON in turn, back to back. The zone is the "
                 "worker's largest shared mapping; private memory is Private_Dirty + "
                 "Private_Clean of the worker in /proc/PID/smaps.")
        L.append("")
        if vts:
            v = next(iter(vts.values()))
            L.append(f"VTS rows: nginx-module-vts {v.get('vts_version', '?')} "
                     f"(`{args.vts_module}`) in `{v['nginx']}` "
                     + ("(ci/vts-build's: the same nginx source and arguments plus "
                        "`--with-http_stub_status_module`, whose counters VTS reads)"
                        if v["nginx"] != args.nginx else "(the same binary)")
                     + ", without this module, "
                     f"`{VTS_ZONE}`, each location with its own "
                     "`vhost_traffic_status_filter_by_set_key nNNNN names`, scraped at "
                     "`/status/format/prometheus` and `/status/format/json` (its HTML page is "
                     "static and fetches the JSON: not measured). VTS does not compress: gzip is "
                     "nginx's gzip filter on `/status` (level 1, as the module's). VTS makes a "
                     "filter key at the key's first request, so 'none' has no keys and the "
                     "second row only those with traffic; 'all' has every key (one more request "
                     "to each other location), as many as the module's NAMEs, and the 1 ms "
                     "client runs then.")
            L.append("")

    if "probe_hits" in results:
        L.append(f"Alerting stayed idle: the local webhook receiver got {results['webhook_posts']} "
                 f"posts; the probe target answered {results['probe_hits']} probes.")
        L.append("")
    if errors:
        L.append("## Failed steps")
        L.append("")
        for e in errors:
            L.append(f"- {e}")
        L.append("")
    return "\n".join(L)
