"""A loopback stand-in for the Telegram Bot API, for Alertmanager's ``telegram_configs`` ``api_url``.

The demo points a real Alertmanager at it to show the message a failure delivers, and tests use it to
read what Alertmanager sent. It records ``POST /bot<token>/sendMessage`` and answers as the Bot API does
(``{"ok": true, "result": {...}}`` with a ``message_id``, https://core.telegram.org/bots/api#sendmessage);
any other method gets the API's 404 shape. It listens on 127.0.0.1 only and never logs a request path:
the path holds the bot token.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class TelegramMessage:
    token: str
    chat_id: str
    text: str
    parse_mode: str | None
    body: dict[str, Any]


@dataclass
class TelegramStub:
    """Serves the Bot API's ``sendMessage`` on a free 127.0.0.1 port while entered; ``url`` is its base."""

    messages: list[TelegramMessage] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self._arrived = threading.Condition(self._lock)

    def __enter__(self) -> TelegramStub:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def record(self, token: str, body: dict[str, Any]) -> int:
        text = str(body.get("text", ""))
        message = TelegramMessage(token, str(body.get("chat_id")), text, body.get("parse_mode"), body)
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
            return len(self.messages)

    def wait_for_message(self, predicate: Callable[[TelegramMessage], bool], timeout: float = 30) -> TelegramMessage:
        """The first message matching ``predicate``; ``TimeoutError`` when none came within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = next((m for m in self.messages if predicate(m)), None)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching Telegram message within {timeout:.0f} s "
                                       f"({len(self.messages)} received)")
                self._arrived.wait(left)


class QuietJsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and never logs a request (a Bot API path holds the bot token)."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send_json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _handler(stub: TelegramStub) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietJsonHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            token, _, method = self.path.lstrip("/").partition("/")
            if not token.startswith("bot") or method != "sendMessage":
                self._send_json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                return
            body = _parse_body(raw, self.headers.get("Content-Type", ""))
            message_id = stub.record(token.removeprefix("bot"), body)
            chat = {"id": int(body.get("chat_id", 0)), "type": "group"}
            result = {"message_id": message_id, "date": int(time.time()), "chat": chat, "text": body.get("text")}
            self._send_json(200, {"ok": True, "result": result})

    return Handler


def _parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    if "json" in content_type:
        return json.loads(raw or b"{}")
    return {key: values[0] for key, values in urllib.parse.parse_qs(raw.decode()).items()}
