#!/usr/bin/env python3
"""A local stand-in for a Discord webhook: prints every alert it receives and answers 204.

Used by ci/run-example when STATUS_ALERT_WEBHOOK is not set, so alerts are visible on a
machine without Discord. Listens on 127.0.0.1 only.

Python rather than the test kit's Rust receiver (tests/kit, which checks every payload against
Discord's limits): this one is for people watching a demo, needs no build and prints what
arrives; the tests and ci/memcheck use the kit's.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            payload = json.loads(body)
            for embed in payload.get("embeds", []):
                print(f"[webhook-sink] {embed.get('title', '')}", flush=True)
            print(json.dumps(payload, indent=2, ensure_ascii=False), flush=True)
        except ValueError:
            print(f"[webhook-sink] not JSON: {body[:200]!r}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9099
    server = ThreadingHTTPServer(("127.0.0.1", port), Sink)
    print(f"[webhook-sink] listening on http://127.0.0.1:{port}/api/webhooks/0/local-sink",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
