"""Scale, the scrape side: for 10, 1,000 and 10,000 NAMEs, the time and size of a scrape in each
format with and without gzip, before and after the NAMEs saw traffic, the longest wait of a
client of the same worker (a request every millisecond, in its own process) while scrapes run,
the zone's size and the worker's private memory.

With a VTS module (--vts-module, STATUS_ALERT_VTS_MODULE; ci/vts-build makes one), the same for
a vanilla nginx with VTS loaded and one filter key per location, as a reference point."""

import copy
import http.client
import json
import multiprocessing
import os
import signal
import statistics
import time

from .memory import read_smaps
from .nginx import names_servers
from .procs import PROCS, StepFailed, free_port, log, wait_port
from .scale_eval import _children, _quantile, ping

FORMATS = (("prometheus", "/status_metrics"), ("json", "/status_metrics?format=json"),
           ("html", "/status_metrics?format=html"))
# VTS's two machine formats (its HTML page is a static dashboard that fetches the JSON).
VTS_FORMATS = (("prometheus", "/status/format/prometheus"), ("json", "/status/format/json"))
# VTS's README asks for 32 MB or more with filter keys; a key takes about 3.5 KB of it, so
# 10,000 keys need about 36 MB (at 32 MB, keys after the 8,142nd were not made).
VTS_ZONE = "vhost_traffic_status_zone shared:vhost_traffic_status:64m;"
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


def _formats(port, runs, formats):
    """Median time and size per format, plain and with Accept-Encoding: gzip."""
    out = {}
    for fmt, path in formats:
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


def _touch_rest(port, n):
    """One request to each location after the first TRAFFIC_NAMES: VTS makes a filter key at
    the key's first request, so that it then has as many keys as the module has NAMEs."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(min(n, TRAFFIC_NAMES), n):
        conn.request("GET", f"/n/{i:04d}")
        conn.getresponse().read()
    conn.close()


def _vts_keys(port):
    """VTS's filter keys of group `names`, its zone's used bytes and its version, from its
    JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", VTS_FORMATS[1][1])
    doc = json.loads(conn.getresponse().read())
    conn.close()
    return (len(doc.get("filterZones", {}).get("names", {})), doc["sharedZones"]["usedSize"],
            doc.get("moduleVersion", "?"))


def _pinger(port, seconds, queue):
    queue.put(ping(port, seconds))


def _pings_while_scraping(port, seconds, formats):
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
            _scrape(port, formats[scrapes % 2][1], False)
            scrapes += 1
        trips = queue.get(timeout=seconds + 120)
    finally:
        client.join(timeout=10)
        if client.is_alive():
            client.kill()
    return trips, scrapes


def _memory(master_pid):
    """The worker's private memory and the largest shared mapping (the status_alert zone, or
    VTS's)."""
    workers = sorted(_children(master_pid))
    if len(workers) != 1:
        raise StepFailed(f"expected 1 worker, found {len(workers)}")
    maps = read_smaps(workers[0])
    private = sum(m.get("Private_Dirty", 0) + m.get("Private_Clean", 0) for m in maps)
    shared = [m["size"] for m in maps if m["perms"][3] == "s"]
    return private, max(shared, default=0)


def _vts_nginx(args, nginx):
    """The nginx that runs VTS: the one ci/vts-build built beside the .so (the same source and
    arguments, plus the stub_status module whose counters VTS reads), else the benchmark's."""
    own = os.path.join(os.path.dirname(args.vts_module), "nginx")
    if not os.access(own, os.X_OK):
        return nginx
    other = copy.copy(nginx)
    other.bin = own
    return other


def _measure(nginx, d, conf, port, n, runs, seconds, vts):
    """Starts nginx with `conf` in `d` and measures it: a row of the report."""
    formats = VTS_FORMATS if vts else FORMATS
    what = f"nginx ({n} NAMEs{', VTS' if vts else ''})"
    row = {"names": n}
    (d / "nginx.conf").write_text(conf)
    p = nginx.start(d)
    try:
        wait_port(port, 60, p, what)
        row["without_traffic"] = _formats(port, runs, formats)
        _traffic(port, n)
        row["with_traffic"] = _formats(port, runs, formats)
        if vts:
            _touch_rest(port, n)
            row["all_keys"] = _formats(port, runs, formats)
            keys, row["zone_used_bytes"], row["vts_version"] = _vts_keys(port)
            if keys != n:
                raise StepFailed(f"{what}: {keys} filter keys after requests to {n} locations")
        trips, scrapes = _pings_while_scraping(port, seconds, formats)
        private, zone = _memory(p.pid)
    finally:
        PROCS.stop(p, signal.SIGQUIT)
    if not trips:
        raise StepFailed(f"{what}: the 1 ms client got no answer")
    row.update({
        "scrapes": scrapes,
        "ping_requests": len(trips),
        "ping_p50_ms": statistics.median(trips),
        "ping_p99_ms": _quantile(trips, 0.99),
        "ping_max_ms": max(trips),
        "zone_bytes": zone,
        "worker_private_bytes": private,
    })
    return row


def bench_scale_scrape(args, nginx, out_dir, results, counts, ping_seconds):
    rows, vts_rows = [], []
    runs = 2 if args.quick else 5
    ping_loc = "        location = /ping { return 204; }\n        location / {"
    for n in counts:
        port = free_port()
        servers = names_servers(n, port, True).replace("        location / {", ping_loc, 1)
        conf = nginx.conf(module=True, master=True, workers=1, servers=servers,
                          http_extra="    status_alert_interval 1s;")
        row = _measure(nginx, nginx.prepare(out_dir / f"scale-scrape-{n}"), conf, port, n, runs,
                       ping_seconds, False)
        rows.append(row)
        busy = row["with_traffic"]
        prom, jsn = busy["prometheus"], busy["json"]
        log(f"scale (scrapes): {n} NAMEs with traffic: Prometheus {prom['ms']:.1f} ms "
            f"{prom['bytes']:,} B (gzip {busy['prometheus_gzip']['bytes']:,} B, "
            f"{busy['prometheus_gzip']['encoding']}), JSON {jsn['ms']:.1f} ms {jsn['bytes']:,} B, "
            f"HTML {busy['html']['ms']:.1f} ms {busy['html']['bytes']:,} B; a 1 ms client during "
            f"{row['scrapes']} scrapes: p50 {row['ping_p50_ms']:.2f} ms, p99 "
            f"{row['ping_p99_ms']:.2f} ms, max {row['ping_max_ms']:.2f} ms; zone "
            f"{row['zone_bytes']:,} B, worker private {row['worker_private_bytes']:,} B")
        if not args.vts_module:
            continue
        # nginx without the module, with VTS: one filter key per location.
        port = free_port()
        servers = names_servers(n, port, False, vts=True).replace(
            "        location / {", ping_loc, 1)
        conf = nginx.conf(module=False, master=True, workers=1, servers=servers,
                          http_extra=f"    {VTS_ZONE}", load=args.vts_module)
        vnginx = _vts_nginx(args, nginx)
        row = _measure(vnginx, nginx.prepare(out_dir / f"scale-scrape-{n}-vts"), conf, port, n,
                       runs, ping_seconds, True)
        row["nginx"] = vnginx.bin
        vts_rows.append(row)
        every = row["all_keys"]
        log(f"scale (scrapes, VTS): {n} filter keys: Prometheus {every['prometheus']['ms']:.1f} ms "
            f"{every['prometheus']['bytes']:,} B, JSON {every['json']['ms']:.1f} ms "
            f"{every['json']['bytes']:,} B; a 1 ms client during {row['scrapes']} scrapes: p50 "
            f"{row['ping_p50_ms']:.2f} ms, p99 {row['ping_p99_ms']:.2f} ms, max "
            f"{row['ping_max_ms']:.2f} ms; zone {row['zone_used_bytes']:,} B used")
    results.setdefault("scale", {})["scrapes"] = rows
    if vts_rows:
        results["scale"]["vts_scrapes"] = vts_rows
    return rows
