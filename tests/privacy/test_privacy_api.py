"""``POST /v1/privacy/export`` on a running ``orchestrator serve``: a privacy key, never a write key; the id
in the body; the customer's records, or 404 without the id repeated."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from api_server import KEY, api_server, basic, make_workspace

PRIVACY_KEY = "test-privacy-key-0123456789"


def test_the_privacy_api_exports_a_customer_to_a_privacy_key_only(tmp_path: Path) -> None:
    config = make_workspace(tmp_path)
    text = config.read_text().replace(
        "  # privacy_keys:\n  #   - id: dpo\n  #     key: ${ORCHESTRATOR_PRIVACY_KEY}\n",
        "  privacy_keys:\n    - id: dpo\n      key: ${ORCHESTRATOR_PRIVACY_KEY}\n",
    )
    assert "privacy_keys:\n    - id: dpo" in text
    config.write_text(text)
    environ = {**os.environ, "ORCHESTRATOR_PRIVACY_KEY": PRIVACY_KEY}
    with api_server(tmp_path, environ=environ) as server, httpx.Client(base_url=server.url) as client:
        for user, page in (("ann@example.com", "/shoes"), ("bob@example.com", "/hats")):
            identify = {"userId": user, "traits": {"email": user, "first_name": user[:3].title()}}
            assert client.post("/v1/identify", json=identify, headers=basic(KEY)).status_code == 200
            call = {"userId": user, "event": "visit", "properties": {"page": page}}
            assert client.post("/v1/track", json=call, headers=basic(KEY)).status_code == 200

        asked = {"customer_id": "ann@example.com"}
        answer = client.post("/v1/privacy/export", json=asked, headers=basic(PRIVACY_KEY))
        assert answer.status_code == 200, answer.text
        records = answer.json()["records"]
        assert records["customers"][0]["email"] == "ann@example.com"
        assert [(e["type"], e["properties"]) for e in records["events"]] == [("visit", {"page": "/shoes"})]
        assert "bob" not in answer.text and "/hats" not in answer.text

        # A write key (which apps carry) is refused; so is no key.
        refused = client.post("/v1/privacy/export", json=asked, headers=basic(KEY))
        assert refused.status_code == 401 and "privacy key" in refused.json()["error"]
        assert client.post("/v1/privacy/export", json=asked).status_code == 401

        unknown = client.post(
            "/v1/privacy/export", json={"customer_id": "carol@example.com"}, headers=basic(PRIVACY_KEY)
        )
        assert unknown.status_code == 404 and "carol" not in unknown.text
        bad = client.post("/v1/privacy/export", content=b"[1]", headers=basic(PRIVACY_KEY))
        assert bad.status_code == 400
        assert "/v1/privacy/export" in client.get("/openapi.json").json()["paths"]
    assert "ann@example.com" not in server.log()  # the id stays out of the server's log
