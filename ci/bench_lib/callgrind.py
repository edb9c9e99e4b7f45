"""1. Instructions per request: nginx under callgrind, exactly N keep-alive requests (ab -k)
between `callgrind_control -z` and `-d`, vanilla vs the module; where the delta goes."""

import re
import time
from pathlib import Path

from .loadgen import ab
from .nginx import front_servers
from .procs import PROCS, StepFailed, free_port, log, run, wait_port


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
