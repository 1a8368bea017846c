"""A tiny OpenAI-compatible chat-completions server on loopback, for the README's
*Providers* example: what a third-party OpenAI-compatible server answers (text, usage),
with the requests it received kept for assertions. Standard library only."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OpenAIMock:
    """``with OpenAIMock() as m: m.base_url`` (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, answer: str = "Hello from the mock server.") -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                mock.requests.append(body)
                mock.auth.append(self.headers.get("Authorization"))
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                reply = json.dumps({
                    "id": f"chatcmpl-{len(mock.requests)}", "object": "chat.completion",
                    "created": 1_700_000_000, "model": body.get("model", "mock"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": mock.answer}}],
                    "usage": {"prompt_tokens": 12, "completion_tokens": 6,
                              "total_tokens": 18}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> OpenAIMock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
