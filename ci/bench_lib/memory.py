"""4. Memory: the size of the status_alert zone's shared mapping, per NAME."""

import re
import time

from .nginx import names_servers
from .procs import PROCS, StepFailed, free_port, log, wait_port

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
