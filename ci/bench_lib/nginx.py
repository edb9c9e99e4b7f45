"""nginx configurations: the main context, and the server blocks each benchmark measures."""

import shutil
from pathlib import Path

from .procs import PROCS, pin, run


class Nginx:
    def __init__(self, args):
        self.bin = args.nginx
        self.module = args.module

    def conf(self, *, module, master, workers, servers, http_extra="", worker_connections=4096,
             rlimit_nofile=None, log_level="warn", load=None):
        """`load`: another module's .so to load (VTS, the reference point of the scale
        section)."""
        lines = []
        if module:
            lines.append(f"load_module {self.module};")
        if load:
            lines.append(f"load_module {load};")
        lines += [
            "daemon off;",
            f"master_process {'on' if master else 'off'};",
            f"worker_processes {workers};",
        ]
        if rlimit_nofile:
            lines.append(f"worker_rlimit_nofile {rlimit_nofile};")
        lines += [
            f"error_log logs/error.log {log_level};",
            "pid logs/nginx.pid;",
            f"events {{ worker_connections {worker_connections}; }}",
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
    alert = {
        "alert": "status_alert be; ",
        # The request path is the same with latency= and slo=: the full config shows it.
        "full": "status_alert be latency=p95:500ms:2s slo=99.9%; ",
    }.get(cfg, "")
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


def names_servers(n, port, module, vts=False):
    """n exact locations, each its own NAME (mixed statuses via ?s=), a plain location counted
    under the first NAME, and /status_metrics. With `vts` (and not `module`), each location has
    its own VTS filter key instead (group `names`) and /status is VTS's status page, gzipped by
    nginx for clients that accept it (VTS does not compress; level 1, as the module's)."""
    locs = []
    # Every slot has room for latency= and slo= state: the memory per NAME is theirs too.
    params = "latency=p95:500ms:2s slo=99.9%"
    for i in range(n):
        alert = f"status_alert n{i:04d} {params}; " if module else ""
        if vts:
            alert = f"vhost_traffic_status_filter_by_set_key n{i:04d} names; "
        locs.append(
            f"        location = /n/{i:04d} {{ {alert}"
            f"if ($arg_s = 404) {{ return 404; }} if ($arg_s = 503) {{ return 503; }} return 200; }}"
        )
    # A NAME used in several locations must have the same parameters in each (nginx -t fails).
    plain_alert = f"status_alert n0000 {params}; " if module and n else ""
    metrics = "        location = /status_metrics { status_metrics; }\n" if module else ""
    if vts:
        metrics = ("        location /status { vhost_traffic_status_display; gzip on; "
                   "gzip_types text/plain application/json; }\n")
    return (
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f"        location / {{ {plain_alert}return 200; }}\n"
        f"{metrics}" + "\n".join(locs) + "\n    }\n"
    )
