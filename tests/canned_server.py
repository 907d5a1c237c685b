"""A real OpenAI-compatible HTTP server on loopback with canned answers, for the judge and policy tests.

Subclass :class:`CannedHandler` and implement ``answer(body)``; the server records every request body, answers the
next requests with the status codes queued in ``failures``, sleeps ``delay`` per request, and tracks the peak number
of requests in flight. :class:`CompletionServer` is one ready to serve a policy: token-id completions in vLLM's or
llama.cpp's response form, and chat completions.
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


def logprob(k: int) -> float:
    """The canned log-probability of a completion's ``k``-th token."""
    return -0.25 * (k + 1)


FORMS = ("vllm", "llama.cpp", "text")


def completion_logprobs(ids: list[int], form: str) -> dict:
    """A completion's ``logprobs`` as each server writes them for ``logprobs: 1``:

    * ``"vllm"``: with ``return_tokens_as_token_ids``, tokens spelled ``"token_id:123"`` and ``token_logprobs``;
    * ``"llama.cpp"``: ``content[].{id, token, bytes, logprob, top_logprobs}`` (it ignores
      ``return_tokens_as_token_ids``);
    * ``"text"``: tokens as text and no ids, like a server that ignores ``return_tokens_as_token_ids``.
    """
    if form == "llama.cpp":
        content = []
        for k, i in enumerate(ids):
            token = {"id": i, "token": f"<{i}>", "bytes": list(f"<{i}>".encode()), "logprob": logprob(k)}
            content.append({**token, "top_logprobs": [token]})
        return {"content": content}
    tokens = [f"token_id:{i}" if form == "vllm" else f"<{i}>" for i in ids]
    return {"tokens": tokens, "token_logprobs": [logprob(k) for k in range(len(ids))]}


class CompletionServer(CannedServer):
    """Answers /v1/completions in the response ``form`` of :data:`FORMS` (default vLLM's) and /v1/chat/completions
    with ``"reply to <last message>"``.

    ``completion(prompt ids) -> (ids, text, finish_reason)`` decides each completion; ``failures`` holds status
    codes for the next requests; ``fail_if(body)`` makes matching requests fail with 500 every time. Records every
    request body and the peak number of requests in flight.
    """

    def __init__(self, form: str = "vllm"):
        super().__init__(CompletionHandler)
        self.form = form
        self.completion = lambda prompt: ([7, 8, 2], "hi", "stop")
        self.fail_if = lambda body: False

    def prompts(self) -> list:
        return [r["prompt"] for r in self.requests if "prompt" in r]


class CompletionHandler(CannedHandler):
    def answer(self, body):
        server: CompletionServer = self.server
        if server.fail_if(body):
            return self.reply(500, {"error": {"message": "canned failure"}})
        if self.path == "/v1/chat/completions":
            text = f"reply to {body['messages'][-1]['content']}"
            return self.reply(
                200, {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
            )
        ids, text, finish = server.completion(body["prompt"])
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": completion_logprobs(ids, server.form)}
        self.reply(200, {"choices": [choice]})
