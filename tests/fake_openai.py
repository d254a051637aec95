"""An OpenAI-compatible server on loopback for tests and benchmarks (standard library only).

Usage::

    with FakeOpenAIServer(latency=0.2) as srv:          # binds 127.0.0.1:0
        client = AsyncOpenAI(base_url=srv.base_url, api_key="sk-test", max_retries=0)
        srv.enqueue(Fault.rate_limit(retry_after=1), Fault.server_error())
        ...
        srv.requests   # list of RecordedRequest (path, headers, json)

Endpoints
  POST /v1/chat/completions   -> chat.completion JSON + usage; caption = hash of image data URL(s)
  POST /v1/images/generations -> {"created", "data":[{"b64_json": <tiny PNG>}], "usage"?}
  GET  /v1/models             -> tiny model list (handy as a key check)

Faults are consumed FIFO, one per request (optionally restricted to an endpoint);
when the queue is empty the server answers normally.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer", "Fault", "RecordedRequest", "closed_port_url", "tiny_png"]


# --------------------------------------------------------------------------- helpers
def tiny_png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid solid-colour RGB PNG built with zlib/struct only."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + tag
            + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def closed_port_url() -> str:
    """base_url pointing at a 127.0.0.1 port with nothing listening (-> connection refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1"


@dataclass
class Fault:
    """One scripted response.

    ``kind``: status, delay, malformed, refusal, empty, invalid_key, disconnect,
    trickle or answer.
    """

    kind: str
    status: int = 200
    headers: dict = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    endpoint: str | None = None  # "chat" | "images" | None (any)

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1, **kw) -> Fault:
        h = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        body = {
            "error": {
                "message": "Rate limit reached (fake)",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        }
        return cls("status", status=429, headers=h, body=body, **kw)

    @classmethod
    def server_error(cls, status: int = 500, retry_after: float | None = None, **kw) -> Fault:
        h = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        body = {
            "error": {
                "message": "The server had an error (fake)",
                "type": "server_error",
                "code": None,
            }
        }
        return cls("status", status=status, headers=h, body=body, **kw)

    @classmethod
    def slow(cls, seconds: float, **kw) -> Fault:
        """Sleep `seconds`, then answer normally (use > client timeout to provoke a timeout)."""
        return cls("delay", delay=seconds, **kw)

    @classmethod
    def malformed_json(cls, content_type: str = "application/json", **kw) -> Fault:
        return cls("malformed", headers={"Content-Type": content_type}, **kw)

    @classmethod
    def refusal(cls, text: str = "I can't help with that", **kw) -> Fault:
        return cls("refusal", body=text, **kw)

    @classmethod
    def empty(cls, **kw) -> Fault:
        return cls("empty", **kw)

    @classmethod
    def invalid_key(cls, **kw) -> Fault:
        return cls("invalid_key", status=401, **kw)

    @classmethod
    def trickle(cls, interval: float = 0.5, **kw) -> Fault:
        """Answer normally, but send the body one byte every ``interval`` seconds."""
        return cls("trickle", delay=interval, **kw)

    @classmethod
    def answer(cls, text: str, **kw) -> Fault:
        """A chat completion whose content is ``text`` (e.g. far longer than max_tokens)."""
        return cls("answer", body=text, **kw)

    @classmethod
    def disconnect(cls, **kw) -> Fault:
        """Close the socket without sending any response."""
        return cls("disconnect", **kw)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict
    json: Any
    t: float


# --------------------------------------------------------------------------- server
class _Server(ThreadingHTTPServer):
    daemon_threads = True  # handler threads never block interpreter exit / server_close()
    # listen() backlog. Must be a class attribute: listen() runs inside __init__. The default of 5
    # makes bursts of >5 new connections lose SYNs (1 s client SYN retransmit) or get reset.
    request_queue_size = 256


class FakeOpenAIServer:
    def __init__(
        self,
        latency: float = 0.0,
        api_key: str | None = None,
        strict_image_params: bool = True,
        echo_key: bool = False,
    ):
        self.latency = latency  # applied to every successful-path request
        self.api_key = api_key  # if set, any other Bearer token -> 401 (echoing the key)
        # a hostile endpoint: the caller's key in every caption, model name, revised
        # prompt, image (a PNG text chunk) and error message it sends back
        self.echo_key = echo_key
        self.strict_image_params = (
            strict_image_params  # reject response_format for gpt-image-* (emulation)
        )
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._inflight = 0
        self.max_inflight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> FakeOpenAIServer:
        handler = _make_handler(self)
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-openai",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes up sleeping "slow" handlers
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- scripting
    def enqueue(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self.max_inflight = 0

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.endpoint in (None, endpoint):
                    return self._faults.pop(i)
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stop.wait(seconds)


def _caption_for(body: dict) -> tuple[str, int]:
    """Deterministic caption from the image data URL(s) + rough prompt-token count."""
    h = hashlib.sha256()
    n_chars, n_images = 0, 0
    for msg in body.get("messages", []):
        content = msg.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        for p in parts:
            if p.get("type") == "image_url":
                h.update(p["image_url"]["url"].encode())
                n_images += 1
            elif p.get("type") == "text":
                n_chars += len(p.get("text") or "")
    digest = h.hexdigest()[:12]
    return f"a photo described by hash {digest}", n_chars // 4 + 85 * n_images + 7


def _make_handler(srv: FakeOpenAIServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
        disable_nagle_algorithm = (
            True  # TCP_NODELAY: otherwise Nagle + delayed ACK adds ~40 ms per response
        )
        timeout = 30  # idle keep-alive sockets get closed eventually
        trickle_interval: float | None = None  # set per request by a trickle fault

        def log_message(self, *a: Any) -> None:  # silence stderr
            pass

        # -- plumbing
        def _send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
            self._send_raw(
                status,
                json.dumps(obj).encode(),
                {"Content-Type": "application/json", **(headers or {})},
            )

        def _send_raw(self, status: int, data: bytes, headers: dict) -> None:
            try:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("x-request-id", f"req_fake_{len(srv.requests)}")
                self.end_headers()  # flushes the header buffer ...
                if self.trickle_interval is None:
                    self.wfile.write(data)  # ... then the body (two writes; fine with NODELAY)
                    return
                for i in range(len(data)):  # one byte per interval, until the client gives up
                    if srv._stop.is_set():
                        return
                    self.wfile.write(data[i : i + 1])
                    self.wfile.flush()
                    srv._sleep(self.trickle_interval)
            except (BrokenPipeError, ConnectionResetError):
                pass  # client gave up (e.g. timeout)

        def _read_json(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                return json.loads(raw) if raw else None
            except ValueError:
                return raw.decode("utf-8", "replace")

        def _bearer(self) -> str:
            auth = self.headers.get("Authorization", "")
            return auth[7:] if auth.startswith("Bearer ") else auth

        def _invalid_key(self) -> None:
            key = self._bearer()
            # Echoes the FULL key (OpenAI masks most of it) so that redaction is tested.
            self._send_json(
                401,
                {
                    "error": {
                        "message": f"Incorrect API key provided: {key}. "
                        "You can find your API key at https://example.invalid.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            )

        # -- verbs
        def do_GET(self) -> None:
            srv.requests.append(
                RecordedRequest("GET", self.path, dict(self.headers), None, time.time())
            )
            if srv.api_key is not None and self._bearer() != srv.api_key:
                return self._invalid_key()
            if self.path.rstrip("/").endswith("/models"):
                return self._send_json(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": "gpt-4o-mini",
                                "object": "model",
                                "created": 0,
                                "owned_by": "fake",
                            }
                        ],
                    },
                )
            self._send_json(
                404, {"error": {"message": "not found", "type": "invalid_request_error"}}
            )

        def do_POST(self) -> None:
            body = self._read_json()
            srv.requests.append(
                RecordedRequest("POST", self.path, dict(self.headers), body, time.time())
            )
            with srv._lock:
                srv._inflight += 1
                srv.max_inflight = max(srv.max_inflight, srv._inflight)
            try:
                self._dispatch(body)
            finally:
                with srv._lock:
                    srv._inflight -= 1

        def _dispatch(self, body: Any) -> None:
            path = self.path.split("?")[0].rstrip("/")
            endpoint = (
                "chat"
                if path.endswith("/chat/completions")
                else "images"
                if path.endswith("/images/generations")
                else None
            )
            if endpoint is None:
                return self._send_json(
                    404,
                    {"error": {"message": f"unknown path {path}", "type": "invalid_request_error"}},
                )
            if srv.api_key is not None and self._bearer() != srv.api_key:
                return self._invalid_key()

            fault = srv._next_fault(endpoint)
            self.trickle_interval = None
            if fault is not None and fault.kind == "trickle":
                self.trickle_interval = fault.delay
            if fault is not None and srv.echo_key and fault.kind == "status":
                fault.body = {"error": {"message": f"bad request from {self._bearer()}"}}
            if fault is not None:
                if fault.kind == "status":
                    return self._send_json(fault.status, fault.body or {}, fault.headers)
                if fault.kind == "invalid_key":
                    return self._invalid_key()
                if fault.kind == "disconnect":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if fault.kind == "malformed":
                    return self._send_raw(
                        200, b'{"id": "chatcmpl-broken", "choices": [', fault.headers
                    )
                if fault.kind == "delay":
                    srv._sleep(fault.delay)
            srv._sleep(srv.latency)
            if not isinstance(body, dict):
                return self._send_json(
                    400,
                    {"error": {"message": "body must be JSON", "type": "invalid_request_error"}},
                )
            if endpoint == "chat":
                return self._chat(body, fault)
            return self._images(body)

        def _chat(self, body: dict, fault: Fault | None) -> None:
            caption, prompt_tokens = _caption_for(body)
            message: dict = {
                "role": "assistant",
                "content": caption,
                "refusal": None,
                "annotations": [],
            }
            finish = "stop"
            if fault is not None and fault.kind == "refusal":
                message.update(content=None, refusal=fault.body)
            elif fault is not None and fault.kind == "empty":
                message.update(content="")
            elif fault is not None and fault.kind == "answer":
                message.update(content=fault.body)
            model = body.get("model", "gpt-4o-mini")
            if srv.echo_key:
                message["content"] = f"{message['content']} (asked by {self._bearer()})"
                model = f"{model}-{self._bearer()}"
            completion_tokens = len((message["content"] or message["refusal"] or "").split())
            self._send_json(
                200,
                {
                    "id": f"chatcmpl-fake{len(srv.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                    "system_fingerprint": "fp_fake",
                },
            )

        def _images(self, body: dict) -> None:
            model = str(body.get("model") or "dall-e-2")
            is_gpt_image = model.startswith("gpt-image") or model.startswith("chatgpt-image")
            if is_gpt_image and srv.strict_image_params and "response_format" in body:
                # Emulation of the documented "unsupported for GPT image models" rule.
                return self._send_json(
                    400,
                    {
                        "error": {
                            "message": "Unknown parameter: 'response_format'.",
                            "type": "invalid_request_error",
                            "param": "response_format",
                            "code": "unknown_parameter",
                        }
                    },
                )
            n = int(body.get("n") or 1)
            seed = hashlib.sha256(str(body.get("prompt", "")).encode()).digest()
            png = tiny_png(rgb=(seed[0], seed[1], seed[2]))
            if srv.echo_key:  # a tEXt chunk before IEND holding the key
                text = b"Comment\x00" + self._bearer().encode()
                chunk = struct.pack(">I", len(text)) + b"tEXt" + text
                chunk += struct.pack(">I", zlib.crc32(b"tEXt" + text) & 0xFFFFFFFF)
                png = png[:-12] + chunk + png[-12:]
            revised = body.get("prompt")
            if srv.echo_key:
                revised = f"{revised} for {self._bearer()}"
            out: dict = {
                "created": int(time.time()),
                "data": [
                    {
                        "b64_json": base64.b64encode(png).decode(),
                        **(
                            {} if is_gpt_image and not srv.echo_key else {"revised_prompt": revised}
                        ),
                    }
                    for _ in range(n)
                ],
            }
            if is_gpt_image:
                ptoks = len(str(body.get("prompt", ""))) // 4 + 1
                out.update(
                    output_format="png",
                    usage={
                        "input_tokens": ptoks,
                        "output_tokens": 272 * n,
                        "total_tokens": ptoks + 272 * n,
                        "input_tokens_details": {"text_tokens": ptoks, "image_tokens": 0},
                    },
                )
            self._send_json(200, out)

    return Handler
