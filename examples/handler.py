"""A tiny webhook handler, the kind a team runs next to the Hookline worker.

The worker has already verified the provider's signature, so the handler only
does the business logic. It answers 2xx when done (the message is then deleted),
anything else to be retried later, in order. `Hookline-Message-Id` is stable
across redeliveries: use it to make the handler idempotent.

    python3 handler.py 8080 /stripe
"""

import http.server
import json
import sys

SEEN: set[str] = set()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        message_id = self.headers.get("Hookline-Message-Id", "")
        group = self.headers.get("Hookline-Group-Id", "")
        if message_id in SEEN:
            # Delivered again after a crash or timeout: already done.
            self.send_response(200)
            self.end_headers()
            return
        try:
            event = json.loads(body or b"{}")
        except json.JSONDecodeError:
            event = {"raw": body.decode("utf-8", "replace")}
        print(f"group={group} message={message_id} event={event.get('id', event.get('action', '?'))}", flush=True)
        SEEN.add(message_id)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # quiet access log
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
