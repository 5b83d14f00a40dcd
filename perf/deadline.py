"""What the whole-request deadline (pr_eval.engines.deadline) costs the OpenAI client.

Sends `--requests` chat completions to a local server whose reply body is `--reply-mb` MB (a
turn's text is a few KB; the large reply makes any per-chunk cost visible) through the `openai`
client, with the deadline transport (default) or with the client's plain transport (`--plain`),
and prints wall milliseconds per request. Run both in one session and compare:

    python perf/deadline.py --plain
    python perf/deadline.py

BENCHMARKS.md ("Whole-request timeouts") has the numbers and the command that pairs the two.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def server(reply_mb: float) -> ThreadingHTTPServer:
    text = "x" * int(reply_mb * 2 ** 20)
    body = json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--reply-mb", type=float, default=4.0)
    parser.add_argument("--plain", action="store_true", help="the openai client's own transport")
    args = parser.parse_args(argv)
    import openai

    from pr_eval.engines import deadline

    httpd = server(args.reply_mb)
    options = {} if args.plain else {"http_client": deadline.client(600.0)}
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1", api_key="x", max_retries=0,
                           timeout=600.0, **options)
    started = time.perf_counter()
    for _ in range(args.requests):
        reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "?"}])
        assert len(reply.choices[0].message.content) == int(args.reply_mb * 2 ** 20)
    elapsed = time.perf_counter() - started
    print(f"{'plain' if args.plain else 'deadline'}: {1000 * elapsed / args.requests:.1f} ms per request "
          f"({args.requests} requests, {args.reply_mb:g} MB replies)", file=sys.stderr)
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
