#!/usr/bin/env python3
"""Benchmark helper driven by ci/bench (standard library only).

Measures, against the same nginx binary with and without the module:
  1. instructions per request under callgrind (ab -k, exactly N requests between -z and -d),
  2. the throughput ratio under wrk (vanilla and module alternately, paired rounds),
  3. the cost of scraping /status_metrics with many NAMEs, and plain-request p99 meanwhile,
  4. the shared memory per NAME (size of the status_alert zone mapping).
Writes target/bench/report.md and report.json and prints the table.

Every process it starts runs in its own process group and is ended on exit, also on SIGTERM /
SIGINT. Only 127.0.0.1 is contacted.
"""

import argparse
import datetime
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

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
    "full": "`status_alert` + probe + webhook (idle)",
}


# ------------------------------------------------------------------------------------------
# Processes, ports, small helpers
# ------------------------------------------------------------------------------------------

class StepFailed(Exception):
    pass


class Procs:
    """Every process started here; each in its own session so its whole group can be ended."""

    def __init__(self):
        self.procs = []
        self.lock = threading.Lock()

    def start(self, cmd, log_path=None, **kw):
        out = open(log_path, "wb") if log_path else subprocess.DEVNULL
        try:
            p = subprocess.Popen(
                [str(c) for c in cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kw,
            )
        finally:
            if log_path:
                out.close()
        with self.lock:
            self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=20):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        else:
            # The leader is gone; end anything left in its group.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        with self.lock:
            if p in self.procs:
                self.procs.remove(p)

    def stop_all(self):
        with self.lock:
            procs = list(self.procs)
        for p in procs:
            try:
                self.stop(p, timeout=10)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


PROCS = Procs()


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout, proc=None, what="nginx"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StepFailed(f"{what} exited with status {proc.returncode} before port {port} answered")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise StepFailed(f"{what}: port {port} did not answer within {timeout}s")


def run(cmd, timeout, what=None, check=True):
    """Runs a short command to completion (in its own group, killed on timeout)."""
    what = what or Path(str(cmd[0])).name
    p = subprocess.Popen(
        [str(c) for c in cmd],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with PROCS.lock:
        PROCS.procs.append(p)
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        PROCS.stop(p, signal.SIGKILL)
        raise StepFailed(f"{what} did not finish within {timeout}s")
    finally:
        with PROCS.lock:
            if p in PROCS.procs:
                PROCS.procs.remove(p)
    out = out.decode("utf-8", "replace")
    if check and p.returncode != 0:
        last = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "")
        raise StepFailed(f"{what} exited with status {p.returncode}: {last.strip()}\n{out[-2000:]}")
    return out


def pin(core, cmd):
    """Prefix a command with taskset when the machine has the cores for it."""
    if core is None or shutil.which("taskset") is None:
        return list(cmd)
    return ["taskset", "-c", str(core)] + list(cmd)


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


def percentile(values, p):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ------------------------------------------------------------------------------------------
# Local probe target and webhook receiver (the alerting stays idle; hits are counted)
# ------------------------------------------------------------------------------------------

class Receiver:
    def __init__(self):
        self.health_hits = 0
        self.webhook_hits = 0
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _send(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body and self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                if self.path.startswith("/health"):
                    recv.health_hits += 1
                    self._send(200, b"ok\n")
                else:
                    self._send(404)

            do_HEAD = do_GET

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                recv.webhook_hits += 1
                self._send(204)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# ------------------------------------------------------------------------------------------
# nginx configurations
# ------------------------------------------------------------------------------------------

class Nginx:
    def __init__(self, args):
        self.bin = args.nginx
        self.module = args.module

    def conf(self, *, module, master, workers, servers, http_extra=""):
        lines = []
        if module:
            lines.append(f"load_module {self.module};")
        lines += [
            "daemon off;",
            f"master_process {'on' if master else 'off'};",
            f"worker_processes {workers};",
            "error_log logs/error.log warn;",
            "pid logs/nginx.pid;",
            "events { worker_connections 4096; }",
            "http {",
            "    access_log off;",
            # Temp paths inside the prefix: nothing is written outside the run's directory.
            "    client_body_temp_path tmp/body;",
            "    proxy_temp_path tmp/proxy;",
            "    fastcgi_temp_path tmp/fastcgi;",
            "    uwsgi_temp_path tmp/uwsgi;",
            "    scgi_temp_path tmp/scgi;",
        ]
        if http_extra:
            lines.append(http_extra)
        lines.append(servers)
        lines.append("}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def prepare(d):
        d = Path(d)
        if d.exists():
            shutil.rmtree(d)
        (d / "logs").mkdir(parents=True)
        (d / "tmp").mkdir()
        return d

    def check(self, d):
        run([self.bin, "-t", "-q", "-p", f"{d}/", "-c", f"{d}/nginx.conf"], 60,
            what=f"nginx -t ({d.name})")

    def start(self, d, core=None, valgrind=None):
        cmd = [self.bin, "-p", f"{d}/", "-c", f"{d}/nginx.conf"]
        if valgrind:
            cmd = valgrind + cmd
        return PROCS.start(pin(core, cmd), log_path=d / "stdout.log")


def front_servers(cfg, p_ret, p_proxy, p_up, receiver_port=None, metrics=False):
    """The measured servers: `return 200` on p_ret, proxy_pass on p_proxy, upstream on p_up."""
    alert = "status_alert be; " if cfg in ("alert", "full") else ""
    http_extra = ""
    if cfg == "full":
        http_extra = (
            f"    status_alert_webhook http://127.0.0.1:{receiver_port}/api/webhooks/1/x;\n"
            f"    status_alert_probe http://127.0.0.1:{receiver_port}/health name=be interval=60s;"
        )
    metrics_loc = "        location = /status_metrics { status_metrics; }\n" if metrics else ""
    servers = f"""
    upstream bench_upstream {{
        server 127.0.0.1:{p_up};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{p_ret};
        location / {{ {alert}return 200; }}
{metrics_loc}    }}
    server {{
        listen 127.0.0.1:{p_proxy};
        location / {{
            {alert}proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{p_up};
        location / {{ return 200 "ok"; }}
    }}
"""
    return http_extra, servers


# ------------------------------------------------------------------------------------------
# 1. Instructions per request
# ------------------------------------------------------------------------------------------

AB_COMPLETE = re.compile(r"^Complete requests:\s+(\d+)", re.M)
AB_FAILED = re.compile(r"^Failed requests:\s+(\d+)", re.M)
AB_NON2XX = re.compile(r"^Non-2xx responses:\s+(\d+)", re.M)
AB_KEEPALIVE = re.compile(r"^Keep-Alive requests:\s+(\d+)", re.M)


def ab(port, n, conc, core, timeout):
    out = run(pin(core, ["ab", "-k", "-q", "-n", n, "-c", conc, f"http://127.0.0.1:{port}/"]),
              timeout, what="ab")
    complete = int(AB_COMPLETE.search(out).group(1)) if AB_COMPLETE.search(out) else -1
    failed = int(AB_FAILED.search(out).group(1)) if AB_FAILED.search(out) else -1
    non2xx = int(AB_NON2XX.search(out).group(1)) if AB_NON2XX.search(out) else 0
    keepalive = int(AB_KEEPALIVE.search(out).group(1)) if AB_KEEPALIVE.search(out) else 0
    if complete != n or failed != 0 or non2xx != 0:
        raise StepFailed(f"ab: {complete} complete, {failed} failed, {non2xx} non-2xx of {n}:\n{out[-1500:]}")
    return {"complete": complete, "keepalive": keepalive}


def read_callgrind_total(path):
    summary = None
    with open(path, "r", errors="replace") as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
            if line.startswith("summary:"):
                summary = int(line.split()[1])
    if summary is None:
        raise StepFailed(f"no totals/summary line in {path}")
    return summary


def callgrind_dump(pid, d, before):
    run(["callgrind_control", "-d", pid], 120, what="callgrind_control -d")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = [p for p in d.glob("callgrind.out*") if p.name not in before]
        for p in new:
            try:
                text = p.read_text(errors="replace")
            except OSError:
                continue
            if "\ntotals:" in text or "\nsummary:" in text:
                return p
        time.sleep(0.2)
    raise StepFailed("callgrind_control -d wrote no dump file")


def annotate(dump):
    """Self cost per (object, function) from callgrind_annotate.

    Entries whose cost equals the program total are the bottom of the stack at the time of the
    zeroing (main, below main), not self cost; they are left out, the rest adds up to the total.
    """
    out = run(["callgrind_annotate", "--threshold=100", "--inclusive=no", "--auto=no", str(dump)],
              120, what="callgrind_annotate")
    pat = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*?)\s*(?:\[([^\]]*)\])?\s*$")
    total = None
    funcs = {}
    for line in out.splitlines():
        m = pat.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in m.group(2):
            total = ir
            continue
        if ir == total:
            continue
        # "file:function": file names hold no ':', Rust paths do.
        fn = m.group(2).split(":", 1)[1] if ":" in m.group(2) else m.group(2)
        obj = Path(m.group(3) or "???").name
        funcs[(obj, fn)] = funcs.get((obj, fn), 0) + ir
    if total is None:
        raise StepFailed(f"callgrind_annotate printed no PROGRAM TOTALS for {dump}")
    # Some entries come without their object; file them with the same function's object.
    owner = {fn: obj for (obj, fn) in funcs if obj != "???"}
    merged = {}
    for (obj, fn), ir in funcs.items():
        key = (owner.get(fn, obj) if obj == "???" else obj, fn)
        merged[key] = merged.get(key, 0) + ir
    return merged


def object_group(obj, nginx_name, module_name):
    if obj == module_name:
        return "module"
    if obj == nginx_name:
        return "nginx"
    if obj.startswith("libc.so") or obj.startswith("libpthread"):
        return "libc"
    return "other"


def attribute(funcs, base, n, nginx_bin, module_file, top):
    """Per-request cost of the module's own functions, and where the delta vs vanilla goes."""
    nginx_name, module_name = Path(nginx_bin).name, Path(module_file).name
    mod = sorted(((ir, fn) for (obj, fn), ir in funcs.items() if obj == module_name), reverse=True)
    groups = {"module": 0.0, "nginx": 0.0, "libc": 0.0, "other": 0.0}
    deltas = []
    for key in set(funcs) | set(base):
        d = (funcs.get(key, 0) - base.get(key, 0)) / n
        groups[object_group(key[0], nginx_name, module_name)] += d
        deltas.append((d, key))
    deltas.sort(reverse=True)
    return {
        "module_ir_per_request": sum(ir for ir, _ in mod) / n,
        "top": [{"ir": ir, "per_request": ir / n, "function": fn} for ir, fn in mod[:top]],
        "delta_by_object": groups,
        "top_deltas": [{"per_request": d, "object": k[0], "function": k[1]}
                       for d, k in deltas[:top] if d >= 1.0],
    }


def bench_callgrind(args, nginx, receiver, out_dir, results):
    n = args.callgrind_requests
    core_srv, core_cli = (0, 1) if args.cores >= 2 else (None, None)
    res = {"requests": n, "warmup": args.callgrind_warmup, "concurrency": 4, "configs": {}}
    results["callgrind"] = res
    for cfg in ("vanilla", "alert", "full"):
        d = nginx.prepare(out_dir / f"callgrind-{cfg}")
        p_ret, p_proxy, p_up = free_port(), free_port(), free_port()
        extra, servers = front_servers(cfg, p_ret, p_proxy, p_up, receiver.port)
        (d / "nginx.conf").write_text(nginx.conf(module=cfg != "vanilla", master=False, workers=1,
                                                 servers=servers, http_extra=extra))
        nginx.check(d)
        vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/callgrind.out"]
        log(f"callgrind: starting nginx ({cfg}) under valgrind")
        p = nginx.start(d, core=core_srv, valgrind=vg)
        try:
            wait_port(p_ret, 90, p, f"nginx under valgrind ({cfg})")
            wait_port(p_proxy, 30, p, f"nginx under valgrind ({cfg})")
            entry = {}
            for kind, port in (("return", p_ret), ("proxy", p_proxy)):
                ab(port, args.callgrind_warmup, 4, core_cli, 300)
                before = {q.name for q in d.glob("callgrind.out*")}
                run(["callgrind_control", "-z", p.pid], 120, what="callgrind_control -z")
                t0 = time.monotonic()
                abres = ab(port, n, 4, core_cli, 1200)
                secs = time.monotonic() - t0
                dump = callgrind_dump(p.pid, d, before)
                total = read_callgrind_total(dump)
                e = {"ir_total": total, "per_request": total / n, "dump": str(dump),
                     "seconds": secs, "keepalive": abres["keepalive"]}
                e["functions"] = annotate(dump)
                entry[kind] = e
                log(f"callgrind {cfg:8s} {kind:6s}: {total / n:,.0f} Ir/request "
                    f"({n} requests in {secs:.1f}s)")
            res["configs"][cfg] = entry
        finally:
            PROCS.stop(p, timeout=60)
    for cfg in ("alert", "full"):
        for kind in ("return", "proxy"):
            base = res["configs"]["vanilla"][kind]["per_request"]
            e = res["configs"][cfg][kind]
            e["delta"] = e["per_request"] - base
            e["delta_pct"] = 100.0 * e["delta"] / base
            e.update(attribute(e["functions"], res["configs"]["vanilla"][kind]["functions"], n,
                               args.nginx, args.module, args.top))
    for cfg in res["configs"].values():
        for e in cfg.values():
            e.pop("functions", None)


# ------------------------------------------------------------------------------------------
# 2. Throughput ratio
# ------------------------------------------------------------------------------------------

WRK_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
WRK_PCT = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_TOTAL = re.compile(r"^\s+(\d+) requests in", re.M)


def wrk(url, seconds, threads, conns, core, what="wrk"):
    out = run(pin(core, ["wrk", "-t", threads, "-c", conns, "-d", f"{seconds}s", "--latency", url]),
              seconds + 60, what=what)
    m = WRK_RPS.search(out)
    if not m:
        raise StepFailed(f"{what}: no Requests/sec in output:\n{out[-1500:]}")
    non2xx = WRK_NON2XX.search(out)
    if non2xx and int(non2xx.group(1)):
        raise StepFailed(f"{what}: {non2xx.group(1)} non-2xx responses:\n{out[-1500:]}")
    total = WRK_TOTAL.search(out)
    if not total or int(total.group(1)) == 0:
        raise StepFailed(f"{what}: no requests completed:\n{out[-1500:]}")
    lat = {}
    for p, v, unit in WRK_PCT.findall(out):
        lat[int(p)] = float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errs = WRK_ERRORS.search(out)
    return {
        "rps": float(m.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": lat.get(50),
        "p99_ms": lat.get(99),
        "socket_errors": sum(int(x) for x in errs.groups()) if errs else 0,
    }


def bench_throughput(args, nginx, receiver, out_dir, results):
    res = {"rounds": args.rounds, "seconds": args.round_seconds, "module_config": "full",
           "runs": []}
    results["throughput"] = res
    pinned = args.cores >= 2
    for workers in (1, 2):
        insts = {}
        procs = []
        try:
            for cfg in ("vanilla", "full"):
                d = nginx.prepare(out_dir / f"wrk-{workers}w-{cfg}")
                p_ret, p_proxy, p_up = free_port(), free_port(), free_port()
                extra, servers = front_servers(cfg, p_ret, p_proxy, p_up, receiver.port)
                (d / "nginx.conf").write_text(nginx.conf(module=cfg != "vanilla", master=True,
                                                         workers=workers, servers=servers,
                                                         http_extra=extra))
                nginx.check(d)
                core = 0 if (workers == 1 and pinned) else None
                p = nginx.start(d, core=core)
                procs.append(p)
                insts[cfg] = {"return": p_ret, "proxy": p_proxy, "proc": p}
            for cfg, i in insts.items():
                wait_port(i["return"], 30, i["proc"], f"nginx ({cfg}, {workers} workers)")
                wait_port(i["proxy"], 30, i["proc"], f"nginx ({cfg}, {workers} workers)")
            if workers == 1:
                threads, conns, core_cli = 1, 16, (1 if pinned else None)
            else:
                threads, conns, core_cli = 2, 32, None
            for kind in ("return", "proxy"):
                # Warm-up: fills the upstream keepalive caches and the CPU caches.
                for cfg in ("vanilla", "full"):
                    wrk(f"http://127.0.0.1:{insts[cfg][kind]}/", 1, threads, conns, core_cli)
                rounds = []
                for r in range(args.rounds):
                    pair = {}
                    for cfg in ("vanilla", "full"):  # A B A B ...
                        pair[cfg] = wrk(f"http://127.0.0.1:{insts[cfg][kind]}/", args.round_seconds,
                                        threads, conns, core_cli, what=f"wrk ({cfg}, {kind})")
                    pair["ratio"] = pair["full"]["rps"] / pair["vanilla"]["rps"]
                    rounds.append(pair)
                    log(f"wrk {workers}w {kind:6s} round {r + 1}: vanilla {pair['vanilla']['rps']:,.0f} "
                        f"module {pair['full']['rps']:,.0f} req/s, ratio {pair['ratio']:.3f}")
                ratios = [p["ratio"] for p in rounds]

                def med(cfg, key):
                    vals = [p[cfg][key] for p in rounds if p[cfg][key] is not None]
                    return statistics.median(vals) if vals else None

                res["runs"].append({
                    "workers": workers,
                    "kind": kind,
                    "pinned": workers == 1 and pinned,
                    "wrk": f"-t{threads} -c{conns}",
                    "vanilla_rps": med("vanilla", "rps"),
                    "module_rps": med("full", "rps"),
                    "vanilla_p99_ms": med("vanilla", "p99_ms"),
                    "module_p99_ms": med("full", "p99_ms"),
                    "ratio_median": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                    "ratio_of_medians": med("full", "rps") / med("vanilla", "rps"),
                    "rounds": rounds,
                })
        finally:
            for p in procs:
                PROCS.stop(p)


# ------------------------------------------------------------------------------------------
# 3. Scrape cost
# ------------------------------------------------------------------------------------------

def names_servers(n, port, module):
    """n exact locations, each its own NAME (mixed statuses via ?s=), a plain location counted
    under the first NAME, and /status_metrics."""
    locs = []
    for i in range(n):
        alert = f"status_alert n{i:04d}; " if module else ""
        locs.append(
            f"        location = /n/{i:04d} {{ {alert}"
            f"if ($arg_s = 404) {{ return 404; }} if ($arg_s = 503) {{ return 503; }} return 200; }}"
        )
    plain_alert = "status_alert n0000; " if module and n else ""
    metrics = "        location = /status_metrics { status_metrics; }\n" if module else ""
    return (
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f"        location / {{ {plain_alert}return 200; }}\n"
        f"{metrics}" + "\n".join(locs) + "\n    }\n"
    )


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


# ------------------------------------------------------------------------------------------
# 4. Memory
# ------------------------------------------------------------------------------------------

MAP_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+\S+\s+\S+\s+\d+\s*(.*)$")


def read_smaps(pid):
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = MAP_HEADER.match(line)
            if m:
                cur = {
                    "size": int(m.group(2), 16) - int(m.group(1), 16),
                    "perms": m.group(3),
                    "path": m.group(4).strip(),
                }
                maps.append(cur)
                continue
            k, _, v = line.partition(":")
            v = v.strip()
            if cur is not None and v.endswith(" kB"):
                cur[k] = int(v.split()[0]) * 1024
    return maps


def memory_snapshot(nginx, d, conf, port, what):
    (d / "nginx.conf").write_text(conf)
    nginx.check(d)
    p = nginx.start(d)
    try:
        wait_port(port, 30, p, what)
        time.sleep(0.3)
        maps = read_smaps(p.pid)
    finally:
        PROCS.stop(p)
    shared = [m for m in maps if m["perms"][3] == "s"]
    return {
        "shared": [{"size": m["size"], "rss": m.get("Rss", 0), "path": m["path"]} for m in shared],
        "rss": sum(m.get("Rss", 0) for m in maps),
    }


def zone_mappings(module_snap, vanilla_snap):
    """Shared mappings present with the module but not without it (multiset by size)."""
    left = [m["size"] for m in vanilla_snap["shared"]]
    extra = []
    for m in module_snap["shared"]:
        if m["size"] in left:
            left.remove(m["size"])
        else:
            extra.append(m)
    return extra


def bench_memory(args, nginx, out_dir, results):
    n = args.names
    snaps = {}
    for label, module, count in (("vanilla-1", False, 1), ("vanilla-n", False, n),
                                 ("module-1", True, 1), ("module-n", True, n)):
        d = nginx.prepare(out_dir / f"memory-{label}")
        port = free_port()
        conf = nginx.conf(module=module, master=False, workers=1,
                          servers=names_servers(count, port, module))
        snaps[label] = memory_snapshot(nginx, d, conf, port, f"nginx ({label})")
    z1 = zone_mappings(snaps["module-1"], snaps["vanilla-1"])
    zn = zone_mappings(snaps["module-n"], snaps["vanilla-n"])
    if len(z1) != 1 or len(zn) != 1:
        raise StepFailed(f"expected exactly one extra shared mapping (the status_alert zone), "
                         f"found {len(z1)} with 1 NAME and {len(zn)} with {n} NAMEs")
    s1, sn = z1[0]["size"], zn[0]["size"]
    res = {
        "names": n,
        "zone_1": s1,
        "zone_1_rss": z1[0]["rss"],
        "zone_1_path": z1[0]["path"],
        "zone_n": sn,
        "zone_n_rss": zn[0]["rss"],
        "per_name": (sn - s1) / (n - 1),
    }
    results["memory"] = res
    log(f"memory: zone {s1:,} B with 1 NAME, {sn:,} B with {n}; {res['per_name']:,.0f} B per NAME")


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------

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
        L.append(f"## Instructions per request (callgrind, 1 process, `ab -k -n {cg['requests']} -c 4` "
                 f"after {cg['warmup']} warm-up requests)")
        L.append("")
        L.append("| location | config | Ir / request | delta vs vanilla | delta % | in the module's .so |")
        L.append("|---|---|---:|---:|---:|---:|")
        for kind in ("return", "proxy"):
            for cfg in ("vanilla", "alert", "full"):
                e = cg["configs"][cfg][kind]
                L.append(f"| {KIND_TITLE[kind]} | {CONFIG_TITLE[cfg]} | {fmt_int(e['per_request'])} | "
                         f"{fmt_delta(e.get('delta')) if cfg != 'vanilla' else '—'} | "
                         f"{fmt_pct(e.get('delta_pct')) if cfg != 'vanilla' else '—'} | "
                         f"{fmt_int(e['module_ir_per_request']) if 'module_ir_per_request' in e else '—'} |")
        L.append("")
        worst = max(cg["configs"][c]["return"]["delta"] for c in ("alert", "full"))
        verdict = ("within the target" if worst <= TARGET_DELTA else "OVER the target")
        if worst <= AIM_DELTA:
            verdict += f" and the aim (+{AIM_DELTA})"
        L.append(f"Target: at most +{TARGET_DELTA} Ir/request on `return 200` (aim +{AIM_DELTA}): "
                 f"worst measured {fmt_delta(worst)}, {verdict}. Anchors (nginx 1.28.3): `return 200` "
                 f"vanilla 10,027, JSON access log +2,117 (+21%), nginx-module-vts +2,532 (+25%); "
                 f"proxy vanilla 33,268, JSON log +3,033, VTS +4,954.")
        L.append("")
        L.append("Where the delta goes (self cost by object, minus vanilla's, Ir/request):")
        L.append("")
        L.append("| location | config | total | module .so | nginx | libc | other |")
        L.append("|---|---|---:|---:|---:|---:|---:|")
        for kind in ("return", "proxy"):
            for cfg in ("alert", "full"):
                e = cg["configs"][cfg][kind]
                g = e["delta_by_object"]
                L.append(f"| {KIND_TITLE[kind]} | {CONFIG_TITLE[cfg]} | {fmt_delta(e['delta'])} | "
                         f"{fmt_delta(g['module'])} | {fmt_delta(g['nginx'])} | {fmt_delta(g['libc'])} | "
                         f"{fmt_delta(g['other'])} |")
        L.append("")
        for cfg in ("alert", "full"):
            e = cg["configs"][cfg]["return"]
            if e.get("top_deltas"):
                L.append(f"Largest per-function deltas vs vanilla, `return 200`, {CONFIG_TITLE[cfg]}:")
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
                 f"zone(1)) / {mem['names'] - 1:,}; it includes the automatic headroom (about 25% spare "
                 f"slots so a reload adding names reuses the zone). Process-private memory (the "
                 f"configuration in nginx's pools) is not reported: per NAME it is smaller than the "
                 f"run-to-run noise of Private_Dirty.")
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


def describe_machine(args, results):
    try:
        out = run([args.nginx, "-v"], 30, what="nginx -v")
        m = re.search(r"nginx/(\S+)", out)
        results["nginx_version"] = m.group(1) if m else out.strip()
    except StepFailed:
        results["nginx_version"] = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                results["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser(prog="ci/bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run with tiny numbers (CI): every measurement path runs once")
    ap.add_argument("--nginx", required=True, help=argparse.SUPPRESS)
    ap.add_argument("--module", required=True, help=argparse.SUPPRESS)
    ap.add_argument("--profile", default="release", help=argparse.SUPPRESS)
    ap.add_argument("--release", action="store_true", help="measure the release build (default for a full run)")
    ap.add_argument("--debug", action="store_true", help="measure the debug build (default with --quick)")
    ap.add_argument("--out", default=str(REPO / "target" / "bench"), help="output directory")
    ap.add_argument("--only", default="callgrind,throughput,scrape,memory",
                    help="comma list of sections to run (default: all)")
    ap.add_argument("--callgrind-requests", type=int, help="ab -n under callgrind (20000; quick 2000)")
    ap.add_argument("--callgrind-warmup", type=int, help="warm-up requests (500; quick 200)")
    ap.add_argument("--rounds", type=int, help="wrk rounds per pair (5; quick 2)")
    ap.add_argument("--round-seconds", type=int, help="seconds per wrk round (5; quick 1)")
    ap.add_argument("--names", type=int, help="NAMEs for scrape and memory (1000; quick 100)")
    ap.add_argument("--scrapes", type=int, help="sequential scrapes timed (20; quick 5)")
    ap.add_argument("--scrape-seconds", type=int, help="seconds of wrk with/without scraping (5; quick 1)")
    ap.add_argument("--top", type=int, default=10, help="module functions listed")
    args = ap.parse_args()

    q = args.quick
    defaults = {
        "callgrind_requests": (20000, 2000),
        "callgrind_warmup": (500, 200),
        "rounds": (5, 2),
        "round_seconds": (5, 1),
        "names": (1000, 100),
        "scrapes": (20, 5),
        "scrape_seconds": (5, 1),
    }
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if q else full)
    if args.names < 2:
        ap.error("--names must be at least 2")
    args.cores = os.cpu_count() or 1
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - {"callgrind", "throughput", "scrape", "memory"}
    if unknown:
        ap.error(f"unknown sections: {', '.join(sorted(unknown))}")
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate", "ab", "wrk"):
        if shutil.which(tool) is None:
            print(f"ci/bench: {tool} not found (ci/deps installs it)", file=sys.stderr)
            return 1

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.cores < 2:
        log("fewer than 2 CPUs: nginx and the load generator are not pinned to separate cores")

    nginx = Nginx(args)
    results = {"mode": "quick" if q else "full", "profile": args.profile, "params": {
        k: getattr(args, k) for k in defaults}}
    errors = []
    receiver = None
    started = time.monotonic()
    try:
        describe_machine(args, results)
        receiver = Receiver()
        steps = {
            "callgrind": lambda: bench_callgrind(args, nginx, receiver, out_dir, results),
            "throughput": lambda: bench_throughput(args, nginx, receiver, out_dir, results),
            "scrape": lambda: bench_scrape(args, nginx, out_dir, results),
            "memory": lambda: bench_memory(args, nginx, out_dir, results),
        }
        for name in sections:
            t0 = time.monotonic()
            hits0 = receiver.health_hits
            log(f"--- {name}")
            try:
                steps[name]()
            except Exception as e:  # noqa: BLE001 - every step is tried; any failure fails the run
                traceback.print_exc(file=sys.stderr)
                errors.append(f"{name}: {e}".splitlines()[0])
            results.setdefault("seconds", {})[name] = round(time.monotonic() - t0, 1)
            results.setdefault("probe_hits_by_section", {})[name] = receiver.health_hits - hits0
        results["webhook_posts"] = receiver.webhook_hits
        results["probe_hits"] = receiver.health_hits
        if receiver.webhook_hits:
            errors.append(f"alerting was not idle: the webhook receiver got {receiver.webhook_hits} posts")
    finally:
        PROCS.stop_all()
        if receiver:
            receiver.close()

    elapsed = time.monotonic() - started
    results["errors"] = errors
    md = report(args, results, errors, elapsed)
    (out_dir / "report.md").write_text(md + "\n")
    (out_dir / "report.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(md)
    print(f"\nwritten: {out_dir / 'report.md'} and report.json ({elapsed:.0f} s)", file=sys.stderr)
    if errors:
        print("ci/bench: FAILED steps:\n  " + "\n  ".join(errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
