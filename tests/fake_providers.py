"""Loopback HTTP servers speaking the OpenAI and Anthropic wire protocols, for adapter tests.

Each server listens on 127.0.0.1 (an ephemeral port) in a daemon thread, answers from a
script of :class:`Reply` objects (one per request, the last one repeated), records every
request (:class:`Recorded`: path, headers, JSON body, arrival time) and stops when its
``with`` block ends, cutting short any reply still sleeping.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

MAX_REQUESTS = 50
"""A server refuses (HTTP 599) any request past this many: a retry loop gone wild."""

Body = Mapping[str, Any] | str | Callable[[dict[str, Any]], Any] | None


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP answer.

    Attributes:
        status: the HTTP status.
        body: JSON (a mapping), raw text, or a function of the request's JSON body.
        headers: extra response headers (``Retry-After``).
        delay: seconds to sleep before answering (to provoke client timeouts).
    """

    status: int = 200
    body: Body = None
    headers: Mapping[str, str] = field(default_factory=dict[str, str])
    delay: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    json: dict[str, Any]
    at: float  # time.monotonic() on arrival


class FakeServer:
    """A scripted loopback HTTP server (use as a context manager)."""

    path = "/"

    def __init__(self, *replies: Reply) -> None:
        self.script: list[Reply] = list(replies)
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting

    def then(self, *replies: Reply) -> Self:
        """Append replies to the script."""
        with self._lock:
            self.script.extend(replies)
        return self

    def _next(self, index: int) -> Reply:
        with self._lock:
            if not self.script:
                return Reply(500, {"error": {"message": "no reply scripted"}})
            return self.script[min(index, len(self.script) - 1)]

    # -- lifecycle

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server._handle(self)

            def do_GET(self) -> None:
                server._handle(self)

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- serving

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        at = time.monotonic()
        length = int(h.headers.get("Content-Length") or 0)
        data = h.rfile.read(length) if length else b""
        try:
            body: dict[str, Any] = json.loads(data) if data else {}
        except ValueError:
            body = {"_unparsed": data.decode("utf-8", "replace")}
        with self._lock:
            index = len(self.requests)
            self.requests.append(
                Recorded(h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body, at)
            )
        if index >= MAX_REQUESTS:
            reply = Reply(599, {"error": {"message": "too many requests to the fake server"}})
        elif h.path != self.path:
            reply = Reply(404, {"error": {"message": f"no route {h.path}"}})
        else:
            reply = self._next(index)
        if reply.delay and self._stopping.wait(reply.delay):
            return  # the test is over: drop the connection
        payload = reply.body(body) if callable(reply.body) else reply.body
        if isinstance(payload, str):
            raw, ctype = payload.encode(), "text/plain"
        else:
            raw, ctype = (
                json.dumps(payload if payload is not None else {}).encode(),
                "application/json",
            )
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(raw)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(raw)
        except OSError:
            pass  # the client gave up (timed out) first

    # -- assertions

    def gaps(self) -> list[float]:
        """Seconds between consecutive requests."""
        return [b.at - a.at for a, b in zip(self.requests, self.requests[1:], strict=False)]


# ----------------------------------------------------------------------------- OpenAI


class OpenAIServer(FakeServer):
    """Speaks ``POST /v1/chat/completions``; point ``base_url`` at :attr:`base_url`."""

    path = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"


def openai_answer(
    content: str | None,
    *,
    refusal: str | None = None,
    finish_reason: str = "stop",
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
    model: str = "gpt-test-2024",
) -> Reply:
    """A chat completion whose first choice says ``content`` (or refuses)."""
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Reply(200, body)


def openai_error(
    status: int, message: str = "error", headers: Mapping[str, str] | None = None
) -> Reply:
    """An OpenAI-style error body with ``status``."""
    kind = {429: "rate_limit_exceeded", 500: "server_error"}.get(status, "invalid_request_error")
    return Reply(
        status,
        {"error": {"message": message, "type": kind, "param": None, "code": kind}},
        dict(headers or {}),
    )


# -------------------------------------------------------------------------- Anthropic


class AnthropicServer(FakeServer):
    """Speaks ``POST /v1/messages``; point ``base_url`` at :attr:`base_url`."""

    path = "/v1/messages"

    @property
    def base_url(self) -> str:
        return self.url


def _anthropic_body(
    content: list[dict[str, Any]],
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
    model: str,
) -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def anthropic_tool_answer(
    tool_input: Any,
    *,
    stop_reason: str = "tool_use",
    input_tokens: int = 21,
    output_tokens: int = 9,
    model: str = "claude-test",
) -> Reply:
    """A message whose only block calls the tool the request forced, with ``tool_input``."""

    def body(request: dict[str, Any]) -> dict[str, Any]:
        choice: dict[str, Any] = request.get("tool_choice") or {}
        name = str(choice.get("name", "unnamed"))
        block = {"type": "tool_use", "id": "toolu_test", "name": name, "input": tool_input}
        return _anthropic_body([block], stop_reason, input_tokens, output_tokens, model)

    return Reply(200, body)


def anthropic_text_answer(
    text: str,
    *,
    stop_reason: str = "end_turn",
    input_tokens: int = 21,
    output_tokens: int = 9,
    model: str = "claude-test",
) -> Reply:
    """A message with one text block (no blocks at all when ``text`` is empty)."""
    content = [{"type": "text", "text": text}] if text else []
    return Reply(200, _anthropic_body(content, stop_reason, input_tokens, output_tokens, model))


def anthropic_error(
    status: int, message: str = "error", headers: Mapping[str, str] | None = None
) -> Reply:
    """An Anthropic-style error body with ``status``."""
    kind = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}.get(
        status, "invalid_request_error"
    )
    return Reply(
        status,
        {"type": "error", "error": {"type": kind, "message": message}},
        dict(headers or {}),
    )
