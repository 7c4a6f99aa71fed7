"""A local server speaking Twilio's Messages API (2010-04-01): HTTP Basic auth with the account
SID and auth token, form-encoded POST to /2010-04-01/Accounts/{sid}/Messages.json, JSON back."""

from __future__ import annotations

import base64
import json
import secrets
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs

from tests.fakes.http_server import LocalServer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def _json(self, status: int, body: dict[str, object]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        app: TwilioServer = self.server.app  # type: ignore[attr-defined]
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) != 4 or parts[0] != "2010-04-01" or parts[3] != "Messages.json":
            self._json(
                404,
                {"code": 20404, "message": "The requested resource was not found", "status": 404},
            )
            return
        sid = parts[2]
        expected = base64.b64encode(f"{app.account_sid}:{app.auth_token}".encode()).decode()
        if sid != app.account_sid or self.headers.get("Authorization") != f"Basic {expected}":
            self._json(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if not form.get("To") or not form.get("Body") or not form.get("From"):
            self._json(
                400, {"code": 21604, "message": "A 'To' phone number is required.", "status": 400}
            )
            return
        message = {
            "sid": "SM" + secrets.token_hex(16),
            "account_sid": sid,
            "to": form["To"],
            "from": form["From"],
            "body": form["Body"],
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": formatdate(usegmt=True),
            "uri": f"/2010-04-01/Accounts/{sid}/Messages/x.json",
        }
        app.messages.append(message)
        self._json(201, message)


class TwilioServer(LocalServer):
    def __init__(self, account_sid: str = "AC" + "0" * 32, auth_token: str = "test-token") -> None:
        super().__init__(_Handler)
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, str]] = []
