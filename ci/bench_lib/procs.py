"""Processes, ports and small helpers shared by every benchmark.

Every process started here runs in its own session, so its whole group can be ended; PROCS
knows them all and main() ends whatever is left on exit.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


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
