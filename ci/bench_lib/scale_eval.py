"""Scale, the configuration and the evaluation side: `nginx -t` and reload time, and the longest
wait of a client of worker 0 while it evaluates rounds of many NAMEs (sliced, see
docs/operations.md), for 10, 1,000 and 10,000 NAMEs side by side."""

import http.client
import os
import signal
import statistics
import time

from .nginx import names_servers
from .procs import PROCS, StepFailed, free_port, log, wait_port


def _min_time(fn, runs):
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best


def _children(pid):
    """Worker pids of master `pid`, from /proc (no pgrep needed)."""
    kids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(entry))
    return kids


def _reload_time(master_pid, timeout=60):
    """Seconds from SIGHUP to the first new worker process."""
    before = _children(master_pid)
    t0 = time.perf_counter()
    os.kill(master_pid, signal.SIGHUP)
    while time.perf_counter() - t0 < timeout:
        if _children(master_pid) - before:
            return time.perf_counter() - t0
        time.sleep(0.002)
    raise StepFailed("no new worker within 60 s of a reload")


def ping(port, seconds, path="/ping"):
    """GET `path` every millisecond on one kept-alive connection for `seconds`; the round
    trips in ms."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    trips = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        trips.append((time.perf_counter() - t0) * 1000.0)
        if r.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        time.sleep(0.001)
    conn.close()
    return trips


def _quantile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


def _evaluations(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", "/status_metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    for line in body.splitlines():
        if line.startswith("nginx_status_alert_evaluations_total "):
            return float(line.split()[1])
    raise StepFailed("no nginx_status_alert_evaluations_total")


def bench_scale_eval(args, nginx, out_dir, results, counts, ping_seconds):
    rows = []
    for n in counts:
        d = nginx.prepare(out_dir / f"scale-eval-{n}")
        port = free_port()
        servers = names_servers(n, port, True).replace(
            "        location / {", "        location = /ping { return 204; }\n        location / {", 1)
        extra = "    status_alert_interval 1s;\n    status_alert_zone 256m;"
        conf = nginx.conf(module=True, master=True, workers=1, servers=servers, http_extra=extra)
        (d / "nginx.conf").write_text(conf)
        vd = nginx.prepare(out_dir / f"scale-eval-{n}-vanilla")
        (vd / "nginx.conf").write_text(nginx.conf(module=False, master=True, workers=1,
                                                  servers=names_servers(n, port, False)))
        runs = 1 if args.quick else 3
        t_module = _min_time(lambda: nginx.check(d), runs)
        t_vanilla = _min_time(lambda: nginx.check(vd), runs)
        p = nginx.start(d)
        try:
            wait_port(port, 60, p, f"nginx ({n} NAMEs)")
            # Rounds have begun once the first evaluation is counted.
            t0 = time.monotonic()
            while _evaluations(port) < 1:
                if time.monotonic() - t0 > 30:
                    raise StepFailed(f"{n} NAMEs: no evaluation within 30 s")
                time.sleep(0.2)
            before = _evaluations(port)
            trips = ping(port, ping_seconds)
            rounds = _evaluations(port) - before
            reload_s = _reload_time(p.pid)
            # The reloaded configuration's worker serves before the measurement ends.
            wait_port(port, 60, p, f"nginx ({n} NAMEs) after a reload")
        finally:
            PROCS.stop(p, signal.SIGQUIT)
        row = {
            "names": n,
            "nginx_t_module_s": t_module - t_vanilla,
            "nginx_t_s": t_module,
            "reload_s": reload_s,
            "eval_rounds": rounds,
            "ping_requests": len(trips),
            "ping_p50_ms": statistics.median(trips),
            "ping_p99_ms": _quantile(trips, 0.99),
            "ping_max_ms": max(trips),
        }
        rows.append(row)
        log(f"scale (evaluation, configuration): {n} NAMEs: nginx -t {t_module:.3f} s "
            f"(module {row['nginx_t_module_s']:.3f} s), reload {reload_s:.3f} s; "
            f"a client of worker 0 during {rounds:.0f} rounds: p50 {row['ping_p50_ms']:.2f} ms, "
            f"p99 {row['ping_p99_ms']:.2f} ms, max {row['ping_max_ms']:.2f} ms")
    results.setdefault("scale", {})["evaluation"] = rows
    return rows
