"""Benchmark helper driven by ci/bench (standard library only).

Measures, against the same nginx binary with and without the module:
  1. instructions per request under callgrind (ab -k, exactly N requests between -z and -d),
  2. the throughput ratio under wrk (vanilla and module alternately, paired rounds),
  3. the cost of scraping /status_metrics with many NAMEs, and plain-request p99 meanwhile,
  4. the shared memory per NAME (size of the status_alert zone mapping),
  5. what 1,000 TCP probe targets at interval=1s cost: threads, worker CPU, zone size, p99,
  6. scale: for 10, 1,000 and 10,000 NAMEs, `nginx -t` and reload time, the waits of a client
     of the evaluating worker (a request every millisecond) while it evaluates and while it is
     scraped, scrape time and size per format (gzip or not, NAMEs with traffic or not), zone
     size and worker private memory; with --vts-module, the scrape side for VTS too.
Writes target/bench/report.md and report.json and prints the table.

Every process it starts runs in its own process group and is ended on exit, also on SIGTERM /
SIGINT. Only 127.0.0.1 is contacted.
"""

import argparse
import json
import os
import re
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from .callgrind import bench_callgrind
from .memory import bench_memory
from .nginx import Nginx
from .probes import bench_probes
from .procs import PROCS, StepFailed, log, run
from .receiver import Receiver
from .report import report
from .scale_eval import bench_scale_eval
from .scale_scrape import bench_scale_scrape
from .scrape import bench_scrape
from .throughput import bench_throughput

REPO = Path(__file__).resolve().parent.parent.parent
SECTIONS = ("callgrind", "throughput", "scrape", "memory", "probes", "scale")


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
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help="comma list of sections to run (default: all)")
    ap.add_argument("--callgrind-requests", type=int, help="ab -n under callgrind (20000; quick 2000)")
    ap.add_argument("--callgrind-warmup", type=int, help="warm-up requests (500; quick 200)")
    ap.add_argument("--rounds", type=int, help="wrk rounds per pair (5; quick 2)")
    ap.add_argument("--round-seconds", type=int, help="seconds per wrk round (5; quick 1)")
    ap.add_argument("--names", type=int, help="NAMEs for scrape and memory (1000; quick 100)")
    ap.add_argument("--scrapes", type=int, help="sequential scrapes timed (20; quick 5)")
    ap.add_argument("--scrape-seconds", type=int, help="seconds of wrk with/without scraping (5; quick 1)")
    ap.add_argument("--probe-targets", type=int, help="TCP probe targets at interval=1s (1000; quick 20)")
    ap.add_argument("--probe-seconds", type=int, help="seconds of CPU measured with the probes idle (10; quick 2)")
    ap.add_argument("--probe-rounds", type=int,
                    help="wrk rounds (of --round-seconds) with and without the probes (3; quick 1)")
    ap.add_argument("--scale-names", help="NAME counts of the scale section (10,1000,10000; quick 10,1000)")
    ap.add_argument("--scale-seconds", type=int,
                    help="seconds of 1 ms pings per NAME count, during evaluation and during scrapes (5; quick 2)")
    ap.add_argument("--vts-module", default=os.environ.get("STATUS_ALERT_VTS_MODULE") or None,
                    help="a VTS .so (ci/vts-build): the scale section measures VTS's scrapes "
                         "beside the module's, one filter key per NAME "
                         "(default: $STATUS_ALERT_VTS_MODULE; none: no VTS rows)")
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
        "probe_targets": (1000, 20),
        "probe_seconds": (10, 2),
        "probe_rounds": (3, 1),
        "scale_names": ("10,1000,10000", "10,1000"),
        "scale_seconds": (5, 2),
    }
    for k, (full, quick) in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, quick if q else full)
    if args.names < 2:
        ap.error("--names must be at least 2")
    if args.probe_targets < 1 or args.probe_seconds < 1 or args.probe_rounds < 1:
        ap.error("--probe-targets, --probe-seconds and --probe-rounds must be at least 1")
    try:
        scale_counts = [int(c) for c in args.scale_names.split(",") if c.strip()]
    except ValueError:
        ap.error("--scale-names must be a comma list of NAME counts")
    if not scale_counts or min(scale_counts) < 1 or args.scale_seconds < 1:
        ap.error("--scale-names needs counts >= 1 and --scale-seconds at least 1")
    if args.vts_module and not Path(args.vts_module).is_file():
        ap.error(f"--vts-module / STATUS_ALERT_VTS_MODULE: no file {args.vts_module}")
    if args.vts_module:
        args.vts_module = str(Path(args.vts_module).resolve())
    args.cores = os.cpu_count() or 1
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
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
            "probes": lambda: bench_probes(args, nginx, out_dir, results),
            "scale": lambda: (bench_scale_eval(args, nginx, out_dir, results, scale_counts,
                                               args.scale_seconds),
                              bench_scale_scrape(args, nginx, out_dir, results, scale_counts,
                                                 args.scale_seconds)),
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
