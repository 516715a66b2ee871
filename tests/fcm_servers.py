"""Google's side of FCM in miniature, for the push tests: a token server standing in for the OAuth2
endpoint (it checks the signed JWT assertion), a service account pointing at it, and FCM v1's answers."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs

import jwt
from channel_servers import LocalHttpServer, Reply, Request
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


class TokenServer:
    """Google's token endpoint in miniature: checks the JWT-bearer grant, answers ``tok-1``, ``tok-2``..."""

    def __init__(self, lifetime_s: int = 3600) -> None:
        self.lifetime_s = lifetime_s
        self.issued: list[str] = []
        self.claims: list[dict[str, object]] = []
        self.server = LocalHttpServer(self.respond)
        self._lock = threading.Lock()

    def respond(self, request: Request) -> Reply:
        form = parse_qs(request.body.decode())
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        # google-auth addresses the assertion to Google's token endpoint whatever the token_uri.
        claims = jwt.decode(
            form["assertion"][0],
            KEY.public_key(),
            algorithms=["RS256"],
            audience="https://oauth2.googleapis.com/token",
        )
        with self._lock:
            self.claims.append(claims)
            token = f"tok-{len(self.issued) + 1}"
            self.issued.append(token)
        body = json.dumps({"access_token": token, "expires_in": self.lifetime_s, "token_type": "Bearer"})
        return Reply(200, body.encode(), {"Content-Type": "application/json"})


def account(token_uri: str) -> dict[str, str]:
    return {
        "type": "service_account",
        "project_id": "shop-app",
        "private_key_id": "k1",
        "private_key": PEM,
        "client_email": "push@shop-app.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


def fcm_answer(request: Request) -> Reply:
    """FCM's answers: a message name, or the error documents FCM v1 gives."""
    token = json.loads(request.body)["message"]["token"]
    if request.headers.get("authorization") == "Bearer revoked":
        return Reply(401, b'{"error": {"code": 401, "status": "UNAUTHENTICATED"}}')
    if token == "gone":
        details = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}
        ]
        return Reply(
            404, json.dumps({"error": {"code": 404, "status": "NOT_FOUND", "details": details}}).encode()
        )
    if token == "malformed":
        violation = {"field": "message.token", "description": "Invalid registration token"}
        details = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}]
        return Reply(
            400,
            json.dumps({"error": {"code": 400, "status": "INVALID_ARGUMENT", "details": details}}).encode(),
        )
    if token == "busy":
        return Reply(429, b'{"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}', {"Retry-After": "30"})
    if token == "forbidden":
        return Reply(403, b'{"error": {"code": 403, "status": "PERMISSION_DENIED"}}')
    return Reply(200, json.dumps({"name": f"projects/shop-app/messages/{token}-0"}).encode())
