"""A small OAuth 2.0 / OpenID Connect provider on 127.0.0.1, speaking the protocol for real:
discovery, authorization code flow with PKCE (S256 checked), client authentication (basic or
post), RS256-signed ID tokens with the nonce, userinfo and JWKS. It also serves GitHub's shape
(/login/oauth/*, /user, /user/emails). Consent is automatic for `server.user`."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.fakes.http_server import LocalServer


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    @property
    def app(self) -> OAuthServer:
        return self.server.app  # type: ignore[attr-defined, no-any-return]

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _bearer_user(self) -> dict[str, Any] | None:
        auth = self.headers.get("Authorization", "")
        return self.app.access_tokens.get(auth.removeprefix("Bearer ").strip())

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        app = self.app
        if url.path == "/.well-known/openid-configuration":
            self._send(
                200,
                {
                    "issuer": app.url,
                    "authorization_endpoint": f"{app.url}/authorize",
                    "token_endpoint": f"{app.url}/token",
                    "userinfo_endpoint": f"{app.url}/userinfo",
                    "jwks_uri": f"{app.url}/jwks",
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_basic",
                        "client_secret_post",
                    ],
                },
            )
        elif url.path in ("/authorize", "/login/oauth/authorize"):
            app.authorize_requests.append(query)
            redirect = query.get("redirect_uri", "")
            if query.get("client_id") != app.client_id or redirect not in app.redirect_uris:
                self._send(400, {"error": "invalid_request"})
                return
            if url.path == "/authorize" and (
                query.get("response_type") != "code" or "openid" not in query.get("scope", "")
            ):
                self._send(400, {"error": "invalid_request"})
                return
            if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
                self._send(400, {"error": "invalid_request", "error_description": "PKCE required"})
                return
            code = secrets.token_urlsafe(24)
            app.codes[code] = {
                "user": dict(app.user),
                "redirect_uri": redirect,
                "challenge": query["code_challenge"],
                "nonce": query.get("nonce"),
            }
            location = f"{redirect}?{urlencode({'code': code, 'state': query.get('state', '')})}"
            self._send(302, None, {"Location": location})
        elif url.path == "/jwks":
            self._send(200, {"keys": [app.key.as_dict(private=False)]})
        elif url.path == "/userinfo":
            user = self._bearer_user()
            if user is None:
                self._send(401, {"error": "invalid_token"})
                return
            self._send(200, {k: user[k] for k in ("sub", "email", "email_verified", "name")})
        elif url.path == "/user":
            user = self._bearer_user()
            if user is None:
                self._send(401, {"message": "Bad credentials"})
                return
            self._send(200, {"id": int(user["sub"]), "login": user["name"], "name": user["name"]})
        elif url.path == "/user/emails":
            user = self._bearer_user()
            if user is None:
                self._send(401, {"message": "Bad credentials"})
                return
            self._send(
                200,
                [
                    {
                        "email": user["email"],
                        "primary": True,
                        "verified": user["email_verified"],
                        "visibility": "private",
                    },
                    {
                        "email": "other@elsewhere.test",
                        "primary": False,
                        "verified": True,
                        "visibility": None,
                    },
                ],
            )
        else:
            self._send(404, {"error": "not_found"})

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        app = self.app
        if url.path not in ("/token", "/login/oauth/access_token"):
            self._send(404, {"error": "not_found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != app.client_id or client_secret != app.client_secret:
            self._send(401, {"error": "invalid_client"})
            return
        grant = app.codes.pop(form.get("code", ""), None)  # single use
        if form.get("grant_type") != "authorization_code" or grant is None:
            self._send(400, {"error": "invalid_grant"})
            return
        verifier = form.get("code_verifier", "")
        expected = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        if expected != grant["challenge"] or form.get("redirect_uri") != grant["redirect_uri"]:
            self._send(
                400,
                {"error": "invalid_grant", "error_description": "PKCE or redirect_uri mismatch"},
            )
            return
        access = secrets.token_urlsafe(24)
        user = grant["user"]
        app.access_tokens[access] = user
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
        if url.path == "/token":
            now = int(time.time())
            claims = {
                "iss": app.url,
                "sub": user["sub"],
                "aud": app.client_id,
                "iat": now,
                "exp": now + 300,
                "nonce": grant["nonce"],
                "email": user["email"],
                "email_verified": user["email_verified"],
                "name": user["name"],
            }
            claims.update(app.id_token_overrides)
            body["id_token"] = jwt.encode({"alg": "RS256", "kid": app.key.kid}, claims, app.key)
            body["scope"] = "openid email profile"
        self._send(200, body)


class OAuthServer(LocalServer):
    def __init__(self, client_id: str = "forkyard-test", client_secret: str = "s3cret") -> None:
        super().__init__(_Handler)
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
        self.redirect_uris: set[str] = set()
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.id_token_overrides: dict[str, Any] = {}
        self.user: dict[str, Any] = {
            "sub": "1001",
            "email": "oauth@example.com",
            "email_verified": True,
            "name": "Olive",
        }
