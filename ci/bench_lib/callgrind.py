"""1. Instructions per request: nginx under callgrind, exactly N keep-alive requests (ab -k)
between `callgrind_control -z` and `-d`, vanilla vs the module; where the delta goes."""

import re
import statistics
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
        file, _, fn = m.group(2).partition(":") if ":" in m.group(2) else ("", "", m.group(2))
        obj = Path(m.group(3) or "???").name
        if file.endswith("/malloc.c") or (obj.startswith("libc.so") and fn in GLIBC_MALLOC):
            # glibc's allocator: its cost per call depends on the heap layout (see LAYOUTS).
            obj += " (malloc)"
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


# The allocator's entry points: how many calls a request makes does not depend on the layout.
ALLOCATOR_CALLS = ("malloc", "free", "calloc", "realloc", "posix_memalign", "memalign", "aligned_alloc")
# glibc's malloc.c functions by name, for when callgrind_annotate shows no file (the file name
# needs glibc's debug symbols, libc6-dbg, which ci/deps installs).
GLIBC_MALLOC = set(ALLOCATOR_CALLS) | {
    "_int_malloc", "_int_free", "_int_realloc", "_int_memalign", "_mid_memalign.constprop.0",
    "unlink_chunk.constprop.0", "malloc_consolidate", "sysmalloc", "tcache_init", "__libc_malloc",
    "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign", "cfree"}


def count_calls(dump, names=ALLOCATOR_CALLS):
    """Calls made to the functions `names` in a callgrind dump (its `calls=` lines), from outside
    the allocator: `posix_memalign` calling `malloc` inside glibc is one allocation, not two."""
    ids, calls, target, caller = {}, 0, None, None

    def name_of(ref):
        if ref.startswith("(") and ")" in ref:
            cid, _, name = ref[1:].partition(")")
            if name.strip():
                ids[cid] = name.strip()
            return ids.get(cid)
        return ref

    with open(dump, "r", errors="replace") as f:
        for line in f:
            if line.startswith("cfn="):
                target = name_of(line[4:].strip())
            elif line.startswith("fn="):
                caller = name_of(line[3:].strip())
            elif line.startswith("calls=") and target in names and caller not in GLIBC_MALLOC:
                calls += int(line[6:].split()[0])
    return calls


def object_group(obj, nginx_name, module_name):
    if obj.endswith(" (malloc)"):
        return "allocator"
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
    groups = {"module": 0.0, "nginx": 0.0, "libc": 0.0, "allocator": 0.0, "other": 0.0}
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


# Heap layouts. glibc's malloc serves each request pool (4 KiB, two blocks per request here) from
# wherever the configuration phase left room: when a block lands beside a free chunk, every request
# pays a coalesce on free and a split on malloc (_int_malloc +187, unlink_chunk +55 Ir). Whether it
# does depends on nothing but the sizes of earlier allocations: vanilla nginx moves between 9,843
# and 10,099 Ir/request with the length of its prefix path alone, or with one more server block.
# So every configuration is measured in the same few layouts (0, 1 and 2 inert server blocks, the
# same for vanilla and module, in run directories whose paths have one length). The headline is the
# delta outside glibc's allocator (median over layouts; it is the same in each within a few Ir),
# together with the allocator calls per request, which must be vanilla's: a module that allocated
# on the request path would show there. Every layout's raw total is in the report.
LAYOUTS = (0, 1, 2)


def pad_servers(count):
    """`count` server blocks that take no traffic: they only shift the heap layout."""
    return "".join(f"    server {{ listen 127.0.0.1:{free_port()}; server_name pad{i}.invalid; return 404; }}\n"
                   for i in range(count))


def measure(args, nginx, receiver, out_dir, cfg, layout, core_srv, core_cli):
    """Ir/request on `return 200` and on proxy_pass for one configuration in one heap layout."""
    n = args.callgrind_requests
    # One path length for every configuration: the prefix path is itself part of the layout.
    d = nginx.prepare(out_dir / f"callgrind-{layout}-{cfg[0]}")
    p_ret, p_proxy, p_up = free_port(), free_port(), free_port()
    extra, servers = front_servers(cfg, p_ret, p_proxy, p_up, receiver.port)
    (d / "nginx.conf").write_text(nginx.conf(module=cfg != "vanilla", master=False, workers=1,
                                             servers=servers + pad_servers(layout), http_extra=extra))
    nginx.check(d)
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d}/callgrind.out"]
    log(f"callgrind: starting nginx ({cfg}, layout {layout}) under valgrind")
    p = nginx.start(d, core=core_srv, valgrind=vg)
    entry = {}
    try:
        wait_port(p_ret, 90, p, f"nginx under valgrind ({cfg})")
        wait_port(p_proxy, 30, p, f"nginx under valgrind ({cfg})")
        for kind, port in (("return", p_ret), ("proxy", p_proxy)):
            ab(port, args.callgrind_warmup, 4, core_cli, 300)
            before = {q.name for q in d.glob("callgrind.out*")}
            run(["callgrind_control", "-z", p.pid], 120, what="callgrind_control -z")
            t0 = time.monotonic()
            abres = ab(port, n, 4, core_cli, 1200)
            secs = time.monotonic() - t0
            dump = callgrind_dump(p.pid, d, before)
            total = read_callgrind_total(dump)
            funcs = annotate(dump)
            allocator_ir = sum(ir for (obj, _), ir in funcs.items() if obj.endswith(" (malloc)"))
            entry[kind] = {"ir_total": total, "per_request": total / n, "dump": str(dump),
                           "seconds": secs, "keepalive": abres["keepalive"],
                           "allocator_calls": count_calls(dump) / n,
                           "allocator_per_request": allocator_ir / n, "functions": funcs}
            log(f"callgrind {cfg:8s} layout {layout} {kind:6s}: {total / n:,.0f} Ir/request "
                f"({n} requests in {secs:.1f}s)")
    finally:
        PROCS.stop(p, timeout=60)
    return entry


def bench_callgrind(args, nginx, receiver, out_dir, results):
    n = args.callgrind_requests
    core_srv, core_cli = (0, 1) if args.cores >= 2 else (None, None)
    res = {"requests": n, "warmup": args.callgrind_warmup, "concurrency": 4, "layouts": list(LAYOUTS),
           "configs": {}}
    results["callgrind"] = res
    runs = {cfg: {layout: measure(args, nginx, receiver, out_dir, cfg, layout, core_srv, core_cli)
                  for layout in LAYOUTS}
            for cfg in ("vanilla", "alert", "full")}
    for cfg in ("vanilla", "alert", "full"):
        res["configs"][cfg] = {}
        for kind in ("return", "proxy"):
            per_layout = []
            for layout in LAYOUTS:
                e = dict(runs[cfg][layout][kind])
                e["layout"] = layout
                if cfg != "vanilla":
                    base = runs["vanilla"][layout][kind]
                    e["delta"] = e["per_request"] - base["per_request"]
                    e["delta_pct"] = 100.0 * e["delta"] / base["per_request"]
                    e.update(attribute(e["functions"], base["functions"], n,
                                       args.nginx, args.module, args.top))
                per_layout.append(e)
            for e in per_layout:
                e.pop("functions", None)
                if cfg != "vanilla":
                    e["allocator_delta"] = e["delta_by_object"]["allocator"]
                    e["delta_outside_allocator"] = e["delta"] - e["allocator_delta"]
                    e["allocator_calls_delta"] = (e["allocator_calls"]
                                                  - runs["vanilla"][e["layout"]][kind]["allocator_calls"])
            summary = {"per_request": statistics.median([e["per_request"] for e in per_layout]),
                       "allocator_calls": statistics.median([e["allocator_calls"] for e in per_layout]),
                       "layouts": per_layout}
            if cfg != "vanilla":
                summary["delta"] = statistics.median([e["delta"] for e in per_layout])
                summary["delta_pct"] = statistics.median([e["delta_pct"] for e in per_layout])
                summary["delta_outside_allocator"] = statistics.median([e["delta_outside_allocator"] for e in per_layout])
                summary["allocator_calls_delta"] = max(e["allocator_calls_delta"] for e in per_layout)
                # The layout whose delta outside the allocator is the median one stands for the
                # configuration in the per-function tables.
                mid = sorted(per_layout, key=lambda e: e["delta_outside_allocator"])[len(per_layout) // 2]
                summary.update({k: mid[k] for k in ("module_ir_per_request", "top", "delta_by_object",
                                                    "top_deltas")})
                summary["median_layout"] = mid["layout"]
            res["configs"][cfg][kind] = summary
