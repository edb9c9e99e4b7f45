"""2. Throughput ratio: wrk against vanilla and the module alternately, in paired rounds."""

import statistics

from .loadgen import wrk
from .nginx import front_servers
from .procs import PROCS, free_port, log, wait_port


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
