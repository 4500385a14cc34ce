"""The buyers' webhook endpoint during a chaos run: records every message it receives, and can go away.

While it is down nothing listens on its port (connections are refused, as when a buyer's server is off);
when it comes back it listens on the same port, so the registered URL keeps working.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ceper.broker import free_port


@dataclass(frozen=True)
class Receipt:
    webhook_id: str
    event_type: str
    at: float  # time.monotonic()
    signed: bool  # the signature verified with one of the buyers' secrets
    status: int  # what the receiver answered


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class WebhookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.secrets: list[str] = []
        self._receipts: list[Receipt] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ceper"

    @property
    def receipts(self) -> list[Receipt]:
        with self._lock:
            return list(self._receipts)

    @property
    def up(self) -> bool:
        return self._server is not None

    def _record(self, receipt: Receipt) -> None:
        with self._lock:
            self._receipts.append(receipt)

    def _verified(self, body: str, headers: dict[str, str]) -> bool:
        for secret in list(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    def start(self, timeout: float = 30) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode(errors="replace")
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    event_type = str(json.loads(body).get("type"))
                except (ValueError, AttributeError):
                    event_type = "?"
                signed = receiver._verified(body, headers)
                status = 200 if signed else 401
                receiver._record(Receipt(headers.get("webhook-id", ""), event_type, time.monotonic(), signed, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        deadline = time.monotonic() + timeout
        while True:
            try:
                self._server = _Server(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._thread = threading.Thread(target=self._server.serve_forever, name="chaos-webhook-receiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
