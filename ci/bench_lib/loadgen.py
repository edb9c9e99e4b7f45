"""Load generators: ab (exact request counts, for callgrind) and wrk (throughput, latency)."""

import re

from .procs import StepFailed, pin, run

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
