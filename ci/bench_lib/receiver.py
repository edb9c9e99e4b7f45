"""Local probe target and webhook receiver: the alerting stays idle; hits are counted.

Python rather than the test kit's receiver (tests/kit): the benchmark is a Python program that
only counts hits here, inside its own process; payloads are checked by the tests.
"""

import http.server
import threading


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
