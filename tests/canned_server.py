"""A real OpenAI-compatible HTTP server on loopback with canned answers, for the judge and policy tests.

Subclass :class:`CannedHandler` and implement ``answer(body)``; the server records every request body, answers the
next requests with the status codes queued in ``failures``, sleeps ``delay`` per request, and tracks the peak number
of requests in flight.
"""

import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CannedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type, delay: float = 0.0):
        super().__init__(("127.0.0.1", 0), handler)
        self.delay, self.failures, self.requests = delay, [], []
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class CannedHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
            server.requests.append(body)
            server.in_flight += 1
            server.peak = max(server.peak, server.in_flight)
            status = server.failures.pop(0) if server.failures else 200
        time.sleep(server.delay)
        with server.lock:
            server.in_flight -= 1
        if status != 200:
            return self.reply(status, {"error": {"message": "canned failure"}})
        self.answer(body)

    def answer(self, body: dict) -> None:
        raise NotImplementedError

    def reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serving(server: CannedServer):
    """Run ``server`` in a background thread for the duration of the block."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
