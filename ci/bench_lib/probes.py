"""5. Probes: what N TCP probe targets at interval=1s cost nginx.

The targets are N listening sockets of this process on 127.0.0.1 (ports chosen by the OS); one
thread accepts and closes what the probes open, and counts it. They are configured the realistic
way, as the `server`s of one `upstream` probed by one `status_alert_probe upstream=... scheme=tcp`.
Three nginx instances (1 worker, master on) differ only in that: vanilla (no module; only to tell
the zone mapping apart, started and stopped first), the module without the probe line, and the
module with it; those two then run side by side, so the machine's load is the same for both:
  - OS threads of every process in nginx's session (master, worker, the helper `status-alert`),
  - CPU per second, idle (utime+stime from /proc/PID/stat; schedstat as the precise cross-check)
    of the evaluating worker, the one that logs "this process evaluates from now on" (it runs
    every probe), and of the master and the helper,
  - the status_alert zone's mapping size (/proc/PID/smaps): per target = difference / N,
  - p50/p99 of `return 200` (wrk -c16, nginx on core 0, wrk and the targets on core 1), in rounds
    alternating between the two.
"""

import http.client
import os
import re
import resource
import selectors
import socket
import statistics
import threading
import time

from .loadgen import wrk
from .memory import read_smaps, zone_mappings
from .procs import PROCS, StepFailed, free_port, log, wait_port

EVALUATES = re.compile(r"\[notice\] (\d+)#\d+: status_alert: this process evaluates from now on")
PROBE_UP = re.compile(r'^nginx_probe_up\{probe="targets",target="tcp://127\.0\.0\.1:(\d+)[^"]*"\} (\d)',
                      re.M)
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Targets:
    """n listening sockets; a thread accepts, closes and counts every connection."""

    def __init__(self, n, core=None):
        self.accepted = 0
        self.socks = []
        self.sel = selectors.DefaultSelector()
        self.stop = threading.Event()
        try:
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.socks.append(s)
                s.bind(("127.0.0.1", 0))
                s.listen(64)
                s.setblocking(False)
                self.sel.register(s, selectors.EVENT_READ)
        except OSError:
            self.close()
            raise
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.core = core
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        if self.core is not None:
            try:
                os.sched_setaffinity(0, {self.core})  # this thread only
            except OSError:
                pass
        while not self.stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                while True:
                    try:
                        c, _ = key.fileobj.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    c.close()
                    self.accepted += 1

    def close(self):
        self.stop.set()
        if getattr(self, "thread", None):
            self.thread.join(timeout=5)
        for s in self.socks:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self.sel.close()


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise StepFailed(f"RLIMIT_NOFILE hard limit {hard} is below the {need} descriptors needed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def proc_stat(pid):
    """(comm, session, utime+stime, utime, stime; in ticks) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    f = s[s.rindex(")") + 2:].split()
    return comm, int(f[3]), int(f[11]) + int(f[12]), int(f[11]), int(f[12])


def on_cpu_ns(pid):
    """Time on CPU in ns (/proc/PID/task/*/schedstat): the precise cross-check of utime+stime,
    which count in clock ticks (10 ms)."""
    total = 0
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def session_procs(sid):
    """{pid: comm} of every process in session sid (nginx started with start_new_session)."""
    out = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            st = proc_stat(int(e))
            if st and st[1] == sid:
                out[int(e)] = st[0]
    return out


def threads(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None


def roles(sid, worker):
    """{'master': pid, 'worker': pid, 'helper': pid} of an nginx instance (session sid)."""
    procs = session_procs(sid)
    helpers = [p for p, c in procs.items() if c == "status-alert"]
    r = {"master": sid, "worker": worker}
    if len(helpers) > 1:
        raise StepFailed(f"{len(helpers)} helper processes (comm status-alert) in nginx's session")
    if helpers:
        r["helper"] = helpers[0]
    others = set(procs) - set(r.values())
    if others:
        raise StepFailed(f"unexpected processes in nginx's session: "
                         f"{', '.join(f'{p} ({procs[p]})' for p in sorted(others))}")
    return r


def wait_for(cond, timeout, what, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StepFailed(f"nginx exited with status {proc.returncode} while waiting for {what}")
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise StepFailed(f"{what}: not within {timeout}s")


def servers(n_ports, port, module):
    """The upstream of targets, and a server with `return 200` (and /status_metrics)."""
    ups = "\n".join(f"        server 127.0.0.1:{p};" for p in n_ports)
    alert = "status_alert bench; " if module else ""
    metrics = "        location = /status_metrics { status_metrics; }\n" if module else ""
    return f"""
    upstream probe_targets {{
{ups}
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ {alert}return 200; }}
{metrics}    }}
"""


PROBE_LINE = ("    status_alert_probe upstream=probe_targets scheme=tcp name=targets "
              "interval=1s timeout=500ms;")


class Instance:
    """One nginx instance of this section: its directory, port, processes and results."""

    def __init__(self, args, nginx, out_dir, label, module, n_probes, targets, wconns, nofile):
        self.label, self.module, self.n_probes = label, module, n_probes
        self.d = nginx.prepare(out_dir / f"probes-{label}")
        self.port = free_port()
        (self.d / "nginx.conf").write_text(nginx.conf(
            module=module, master=True, workers=1,
            servers=servers(targets.ports, self.port, module),
            http_extra=PROBE_LINE if n_probes else "",
            worker_connections=wconns, rlimit_nofile=nofile, log_level="notice"))
        nginx.check(self.d)
        self.p = nginx.start(self.d, core=0 if args.cores >= 2 else None)
        self.res = {"label": label, "probes": n_probes}
        self.roles = None

    def ready(self, targets, base):
        """Waits for the evaluator (and the first probe of every target), notes the processes."""
        p, label = self.p, self.label
        wait_port(self.port, 30, p, f"nginx ({label})")
        if self.module:
            err = self.d / "logs" / "error.log"

            def evaluator():
                m = EVALUATES.search(err.read_text(errors="replace"))
                return int(m.group(1)) if m else None

            worker = wait_for(evaluator, 30, "the log line 'this process evaluates from now on'", p)
        else:
            kids = wait_for(lambda: [q for q in session_procs(p.pid) if q != p.pid], 30,
                            "the worker", p)
            if len(kids) != 1:
                raise StepFailed(f"vanilla nginx: {len(kids)} processes besides the master")
            worker = kids[0]
        if self.n_probes:
            wait_for(lambda: targets.accepted - base >= self.n_probes, 30,
                     f"a first probe of all {self.n_probes} targets", p)
        return worker

    def snapshot(self, worker):
        """Threads and memory, idle."""
        r = self.roles = roles(self.p.pid, worker)
        if self.module and "helper" not in r:
            raise StepFailed(f"{self.label}: no helper process (comm status-alert) in nginx's session")
        res = self.res
        res["pids"] = r
        res["threads"] = {k: threads(v) for k, v in r.items()}
        res["threads_total"] = sum(res["threads"].values())
        res["shared"] = [{"size": m["size"], "rss": m.get("Rss", 0), "path": m["path"]}
                         for m in read_smaps(self.p.pid) if m["perms"][3] == "s"]
        res["worker_private"] = sum(m.get("Private_Dirty", 0) + m.get("Private_Clean", 0)
                                    for m in read_smaps(worker))

    def cpu_sample(self):
        return {k: (proc_stat(v), on_cpu_ns(v)) for k, v in self.roles.items()}

    def cpu_result(self, s0, s1, secs):
        cpu, user, system, sched = {}, {}, {}, {}
        for k in self.roles:
            (t0, n0), (t1, n1) = s0[k], s1[k]
            if t0 and t1:
                # ms of CPU per second
                cpu[k], user[k], system[k] = ((t1[j] - t0[j]) / CLK_TCK / secs * 1000.0 for j in (2, 3, 4))
            if n0 is not None and n1 is not None:
                sched[k] = (n1 - n0) / 1e6 / secs
        self.res["cpu_ms_per_s"] = cpu
        self.res["utime_ms_per_s"] = user
        self.res["stime_ms_per_s"] = system
        self.res["sched_ms_per_s"] = sched
        self.res["cpu_seconds"] = round(secs, 2)

    def check_after(self):
        """Every target is up (the probes really succeed); threads did not change under load."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", "/status_metrics")
        text = conn.getresponse().read().decode("utf-8", "replace")
        conn.close()
        ups = PROBE_UP.findall(text)
        self.res["targets_up"] = sum(1 for _, v in ups if v == "1")
        if len(ups) != self.n_probes or self.res["targets_up"] != self.n_probes:
            raise StepFailed(f"{self.label}: /status_metrics shows {len(ups)} probe targets, "
                             f"{self.res['targets_up']} up, of {self.n_probes}")
        after = {k: threads(v) for k, v in self.roles.items()}
        if after != self.res["threads"]:
            raise StepFailed(f"{self.label}: threads changed under load: {self.res['threads']} -> {after}")

    def stop(self):
        PROCS.stop(self.p)


def bench_probes(args, nginx, out_dir, results):
    n = args.probe_targets
    # Our n listeners + slack; nginx inherits the limit and sets its worker's own.
    raise_nofile(n + 1024)
    nofile = 2 * n + 1024
    wconns = max(4096, n + 1024)
    pinned = args.cores >= 2
    targets = Targets(n, core=1 if pinned else None)
    res = {"targets": n, "interval": "1s", "timeout": "500ms", "workers": 1,
           "worker_connections": wconns, "worker_rlimit_nofile": nofile,
           "wrk": "-t1 -c16", "rounds": args.probe_rounds, "round_seconds": args.round_seconds,
           "cpu_seconds": args.probe_seconds}
    results["probes"] = res
    insts = []
    try:
        # Vanilla: only to tell the zone's mapping apart from nginx's own shared memory.
        van = Instance(args, nginx, out_dir, "vanilla", False, 0, targets, wconns, nofile)
        insts.append(van)
        van.snapshot(van.ready(targets, targets.accepted))
        van.stop()
        insts.remove(van)

        # The module without and with the probes, both running from here on: the machine's load
        # (and the targets' accept thread) is the same for both, rounds alternate.
        base = targets.accepted
        none = Instance(args, nginx, out_dir, "none", True, 0, targets, wconns, nofile)
        insts.append(none)
        wp = Instance(args, nginx, out_dir, "probes", True, n, targets, wconns, nofile)
        insts.append(wp)
        for i in (none, wp):
            i.snapshot(i.ready(targets, base))
        time.sleep(1.0)  # one more interval: the first probes are spread over the first second

        # CPU, idle (the probes are the only work), both instances over the same window.
        s0 = {i.label: i.cpu_sample() for i in (none, wp)}
        a0, c0 = targets.accepted, time.monotonic()
        time.sleep(args.probe_seconds)
        s1 = {i.label: i.cpu_sample() for i in (none, wp)}
        a1, c1 = targets.accepted, time.monotonic()
        secs = c1 - c0
        for i in (none, wp):
            i.cpu_result(s0[i.label], s1[i.label], secs)
        res["probes_per_s"] = (a1 - a0) / secs
        # A rate over --probe-seconds: 10 s in a full run (within 15 % of the targets per
        # second), 2 s with --quick, where a second's probes at either end of the window and a
        # machine still busy with the previous CI step move it more (a smoke check: within 30 %).
        slack = 0.30 if args.quick else 0.15
        if not (1 - slack) * n <= res["probes_per_s"] <= (1 + slack) * n:
            raise StepFailed(f"the targets saw {res['probes_per_s']:.1f} probes/s, expected about {n}")
        for i in (none, wp):
            log(f"probes {i.label}: threads {i.res['threads']}, worker CPU "
                f"{i.res['cpu_ms_per_s'].get('worker', 0):.2f} ms/s "
                f"(schedstat {i.res['sched_ms_per_s'].get('worker', 0):.2f})")
        log(f"probes: the targets saw {res['probes_per_s']:.1f} probes/s")

        # p99 of plain requests, rounds alternating between the two instances.
        core_cli = 1 if pinned else None
        for i in (none, wp):
            wrk(f"http://127.0.0.1:{i.port}/", 1, 1, 16, core_cli, what=f"wrk warm-up ({i.label})")
            i.res["wrk_rounds"] = []
        for r in range(args.probe_rounds):
            for i in (none, wp):
                w = wrk(f"http://127.0.0.1:{i.port}/", args.round_seconds, 1, 16, core_cli,
                        what=f"wrk ({i.label})")
                i.res["wrk_rounds"].append(w)
                log(f"probes round {r + 1} {i.label:6s}: p50 {w['p50_ms']:.3f} ms, "
                    f"p99 {w['p99_ms']:.3f} ms, {w['rps']:,.0f} req/s")
        for i in (none, wp):
            rounds = i.res["wrk_rounds"]
            i.res["p50_ms"] = statistics.median(x["p50_ms"] for x in rounds)
            i.res["p99_ms"] = statistics.median(x["p99_ms"] for x in rounds)
            i.res["rps"] = statistics.median(x["rps"] for x in rounds)
        ratios = [b["p99_ms"] / a["p99_ms"] for a, b in zip(none.res["wrk_rounds"], wp.res["wrk_rounds"])
                  if a["p99_ms"]]
        wp.check_after()
        none.res["targets_up"] = 0

        runs = {"vanilla": van.res, "none": none.res, "probes": wp.res}
        res["runs"] = runs
        z0 = zone_mappings(none.res, van.res)
        zn = zone_mappings(wp.res, van.res)
        if len(z0) != 1 or len(zn) != 1:
            raise StepFailed(f"expected exactly one extra shared mapping (the status_alert zone), "
                             f"found {len(z0)} without probes and {len(zn)} with {n} targets")
        nr, pr = none.res, wp.res
        res.update({
            "zone_0": z0[0]["size"],
            "zone_n": zn[0]["size"],
            "per_target": (zn[0]["size"] - z0[0]["size"]) / n,
            "worker_private_per_target": (pr["worker_private"] - nr["worker_private"]) / n,
            "threads_none": nr["threads"],
            "threads_probes": pr["threads"],
            "threads_vanilla": van.res["threads"],
            "cpu_worker_none": nr["cpu_ms_per_s"].get("worker"),
            "cpu_worker_probes": pr["cpu_ms_per_s"].get("worker"),
            "sched_worker_none": nr["sched_ms_per_s"].get("worker"),
            "sched_worker_probes": pr["sched_ms_per_s"].get("worker"),
            "p99_none_ms": nr["p99_ms"],
            "p99_probes_ms": pr["p99_ms"],
            "p99_ratio": pr["p99_ms"] / nr["p99_ms"] if nr["p99_ms"] else None,
            "p99_ratio_median_of_pairs": statistics.median(ratios) if ratios else None,
            "p99_ratio_min": min(ratios) if ratios else None,
            "p99_ratio_max": max(ratios) if ratios else None,
            "p50_none_ms": nr["p50_ms"],
            "p50_probes_ms": pr["p50_ms"],
            "rps_none": nr["rps"],
            "rps_probes": pr["rps"],
        })
        log(f"probes: {n} targets: zone {res['zone_0']:,} -> {res['zone_n']:,} B "
            f"({res['per_target']:,.0f} B per target); worker CPU {res['cpu_worker_none']:.2f} -> "
            f"{res['cpu_worker_probes']:.2f} ms/s; p99 {res['p99_none_ms']:.3f} -> "
            f"{res['p99_probes_ms']:.3f} ms (x{res['p99_ratio']:.2f})")
    finally:
        for i in insts:
            i.stop()
        targets.close()
