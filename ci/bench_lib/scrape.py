"""3. Scrape cost: /status_metrics with many NAMEs, and plain-request p99 meanwhile."""

import http.client
import json
import re
import statistics
import time

from .loadgen import WRK_PCT, WRK_RPS, wrk
from .nginx import names_servers
from .procs import PROCS, StepFailed, free_port, log, pin, wait_port


def timed_get(conn, path, headers=None):
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    dt = (time.perf_counter() - t0) * 1000.0
    if r.status != 200:
        raise StepFailed(f"GET {path}: status {r.status}")
    return dt, body


def bench_scrape(args, nginx, out_dir, results):
    n = args.names
    pinned = args.cores >= 2
    d = nginx.prepare(out_dir / "scrape")
    port = free_port()
    (d / "nginx.conf").write_text(nginx.conf(module=True, master=True, workers=1,
                                             servers=names_servers(n, port, True)))
    nginx.check(d)
    p = nginx.start(d, core=0 if pinned else None)
    res = {"names": n, "workers": 1}
    results["scrape"] = res
    try:
        wait_port(port, 30, p, "nginx (scrape)")
        # Every NAME sees 200, 404 and 503, so every NAME has three status series.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(n):
            for q in ("", "?s=404", "?s=503"):
                conn.request("GET", f"/n/{i:04d}{q}")
                r = conn.getresponse()
                r.read()
        # Render time, nothing else running: sequential keep-alive scrapes.
        timed_get(conn, "/status_metrics")
        prom, jsn = [], []
        body = b""
        jbody = b""
        for _ in range(args.scrapes):
            dt, body = timed_get(conn, "/status_metrics")
            prom.append(dt)
        for _ in range(args.scrapes):
            dt, jbody = timed_get(conn, "/status_metrics?format=json")
            jsn.append(dt)
        plain = []
        for _ in range(args.scrapes):
            dt, _ = timed_get(conn, "/")
            plain.append(dt)
        conn.close()
        text = body.decode("utf-8", "replace")
        seen = set(re.findall(r'^nginx_location_requests_total\{location="(n\d{4})"', text, re.M))
        if len(seen) != n:
            raise StepFailed(f"/status_metrics lists {len(seen)} of {n} names")
        json.loads(jbody)
        res.update({
            "scrapes": args.scrapes,
            "prom_ms_median": statistics.median(prom),
            "prom_ms_max": max(prom),
            "prom_bytes": len(body),
            "prom_lines": text.count("\n"),
            "json_ms_median": statistics.median(jsn),
            "json_bytes": len(jbody),
            "plain_ms_median": statistics.median(plain),
        })
        log(f"scrape: {n} names, {len(body):,} bytes, median {res['prom_ms_median']:.2f} ms (prom), "
            f"{res['json_ms_median']:.2f} ms (json)")

        # p99 of plain requests without and with a scrape loop.
        core_cli = 1 if pinned else None
        url = f"http://127.0.0.1:{port}/"
        base = wrk(url, args.scrape_seconds, 1, 16, core_cli, what="wrk (plain)")
        scraper = PROCS.start(
            pin(core_cli, ["wrk", "-t1", "-c1", "-d", f"{args.scrape_seconds + 2}s", "--latency",
                           f"http://127.0.0.1:{port}/status_metrics"]),
            log_path=d / "scraper.log")
        try:
            time.sleep(0.5)
            loaded = wrk(url, args.scrape_seconds, 1, 16, core_cli, what="wrk (plain, while scraping)")
            scraper.wait(timeout=args.scrape_seconds + 60)
        finally:
            PROCS.stop(scraper)
        sout = (d / "scraper.log").read_text(errors="replace")
        if scraper.returncode != 0 or not WRK_RPS.search(sout):
            raise StepFailed(f"scrape loop (wrk) failed:\n{sout[-1500:]}")
        lat = {int(pp): float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[u]
               for pp, v, u in WRK_PCT.findall(sout)}
        res.update({
            "plain_rps": base["rps"],
            "plain_p50_ms": base["p50_ms"],
            "plain_p99_ms": base["p99_ms"],
            "loaded_rps": loaded["rps"],
            "loaded_p50_ms": loaded["p50_ms"],
            "loaded_p99_ms": loaded["p99_ms"],
            "scrapes_per_s": float(WRK_RPS.search(sout).group(1)),
            "scrape_loop_p50_ms": lat.get(50),
            "scrape_loop_p99_ms": lat.get(99),
        })
        log(f"scrape: plain p99 {base['p99_ms']} ms alone, {loaded['p99_ms']} ms while scraping "
            f"({res['scrapes_per_s']:.1f} scrapes/s)")
    finally:
        PROCS.stop(p)
