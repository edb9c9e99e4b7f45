"""Scale, the scrape side: for 10, 1,000 and 10,000 NAMEs, the time and size of a scrape in each
format with and without gzip, before and after the NAMEs saw traffic, the longest wait of a
client of the same worker (a request every millisecond, in its own process) while scrapes run,
the zone's size and the worker's private memory."""

import http.client
import multiprocessing
import signal
import statistics
import time

from .memory import read_smaps
from .nginx import names_servers
from .procs import PROCS, StepFailed, free_port, log, wait_port
from .scale_eval import _children, _quantile, ping

FORMATS = (("prometheus", "/status_metrics"), ("json", "/status_metrics?format=json"),
           ("html", "/status_metrics?format=html"))
# NAMEs that get traffic (the rest stay at zero, as most locations of a large gateway are).
TRAFFIC_NAMES = 200


def _scrape(port, path, gzip):
    """One scrape on a new connection: (ms, bytes on the wire, Content-Encoding)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Accept-Encoding": "gzip"} if gzip else {}
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    ms = (time.perf_counter() - t0) * 1000.0
    conn.close()
    if r.status != 200:
        raise StepFailed(f"GET {path}: status {r.status}")
    return ms, len(body), r.getheader("Content-Encoding", "identity")


def _formats(port, runs):
    """Median time and size per format, plain and with Accept-Encoding: gzip."""
    out = {}
    for fmt, path in FORMATS:
        for gz in (False, True):
            _scrape(port, path, gz)
            trips = [_scrape(port, path, gz) for _ in range(runs)]
            out[f"{fmt}{'_gzip' if gz else ''}"] = {
                "ms": statistics.median(t[0] for t in trips),
                "bytes": trips[-1][1],
                "encoding": trips[-1][2],
            }
    return out


def _traffic(port, n):
    """200, 404 and 503 on the first TRAFFIC_NAMES NAMEs."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(min(n, TRAFFIC_NAMES)):
        for q in ("", "?s=404", "?s=503"):
            conn.request("GET", f"/n/{i:04d}{q}")
            conn.getresponse().read()
    conn.close()


def _pinger(port, seconds, queue):
    queue.put(ping(port, seconds))


def _pings_while_scraping(port, seconds):
    """The 1 ms client's round trips (its own process) while this one scrapes Prometheus text
    and JSON in turn; and how many scrapes ran."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    client = ctx.Process(target=_pinger, args=(port, seconds, queue))
    client.start()
    scrapes = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            _scrape(port, FORMATS[scrapes % 2][1], False)
            scrapes += 1
        trips = queue.get(timeout=seconds + 120)
    finally:
        client.join(timeout=10)
        if client.is_alive():
            client.kill()
    return trips, scrapes


def _memory(master_pid):
    """The worker's private memory and the largest shared mapping (the status_alert zone)."""
    workers = sorted(_children(master_pid))
    if len(workers) != 1:
        raise StepFailed(f"expected 1 worker, found {len(workers)}")
    maps = read_smaps(workers[0])
    private = sum(m.get("Private_Dirty", 0) + m.get("Private_Clean", 0) for m in maps)
    shared = [m["size"] for m in maps if m["perms"][3] == "s"]
    return private, max(shared, default=0)


def bench_scale_scrape(args, nginx, out_dir, results, counts, ping_seconds):
    rows = []
    runs = 2 if args.quick else 5
    for n in counts:
        d = nginx.prepare(out_dir / f"scale-scrape-{n}")
        port = free_port()
        servers = names_servers(n, port, True).replace(
            "        location / {", "        location = /ping { return 204; }\n        location / {", 1)
        conf = nginx.conf(module=True, master=True, workers=1, servers=servers,
                          http_extra="    status_alert_interval 1s;")
        (d / "nginx.conf").write_text(conf)
        p = nginx.start(d)
        try:
            wait_port(port, 60, p, f"nginx ({n} NAMEs)")
            idle = _formats(port, runs)
            _traffic(port, n)
            busy = _formats(port, runs)
            trips, scrapes = _pings_while_scraping(port, ping_seconds)
            private, zone = _memory(p.pid)
        finally:
            PROCS.stop(p, signal.SIGQUIT)
        if not trips:
            raise StepFailed(f"{n} NAMEs: the 1 ms client got no answer")
        row = {
            "names": n,
            "without_traffic": idle,
            "with_traffic": busy,
            "scrapes": scrapes,
            "ping_requests": len(trips),
            "ping_p50_ms": statistics.median(trips),
            "ping_p99_ms": _quantile(trips, 0.99),
            "ping_max_ms": max(trips),
            "zone_bytes": zone,
            "worker_private_bytes": private,
        }
        rows.append(row)
        prom, jsn = busy["prometheus"], busy["json"]
        log(f"scale (scrapes): {n} NAMEs with traffic: Prometheus {prom['ms']:.1f} ms "
            f"{prom['bytes']:,} B (gzip {busy['prometheus_gzip']['bytes']:,} B, "
            f"{busy['prometheus_gzip']['encoding']}), JSON {jsn['ms']:.1f} ms {jsn['bytes']:,} B, "
            f"HTML {busy['html']['ms']:.1f} ms {busy['html']['bytes']:,} B; a 1 ms client during "
            f"{scrapes} scrapes: p50 {row['ping_p50_ms']:.2f} ms, p99 {row['ping_p99_ms']:.2f} ms, "
            f"max {row['ping_max_ms']:.2f} ms; zone {zone:,} B, worker private {private:,} B")
    results.setdefault("scale", {})["scrapes"] = rows
    return rows
