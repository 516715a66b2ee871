"""The privacy API: ``POST /v1/privacy/export`` answers an access request with every record the store
holds about one customer (``store.customer_export``).

It takes a privacy key (``http.privacy_keys``, HTTP Basic with the key as the user name), never a write
key: write keys live in apps and browsers, a privacy key stays with the team that answers requests. The
customer's id travels in the JSON body (``{"customer_id": "..."}``), not in the URL, so that it stays out
of access logs and proxies' records.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.http._auth import WriteKeys
from orchestrator.http._events import JSON, problem, read_body
from orchestrator.store import Store, customer_export

_UNAUTHORIZED = {"WWW-Authenticate": 'Basic realm="orchestrator-privacy"'}
#: A request names one customer: a small body.
MAX_BODY = 8 * 1024


class PrivacyApi:
    """The privacy handlers over one store."""

    def __init__(self, keys: WriteKeys, store: Store) -> None:
        self.keys = keys
        self.store = store

    async def export(self, request: Request) -> Response:
        if self.keys.check(request.headers.get("authorization")) is None:
            return problem(
                401, "a privacy key is needed: HTTP Basic auth with the key as the user name", _UNAUTHORIZED
            )
        body = await read_body(request, MAX_BODY)
        if body is None:
            return problem(413, f"the request is over {MAX_BODY // 1024} KB")
        try:
            data = orjson.loads(body)
        except ValueError:
            return problem(400, "the body is not JSON")
        customer = data.get("customer_id") if isinstance(data, dict) else None
        if not isinstance(customer, str) or not customer:
            return problem(400, 'give the customer as {"customer_id": "..."}')
        records = await run_in_threadpool(self._export, customer)
        if records is None:
            return problem(404, "no customer has that id")  # the id is not repeated: it may be an address
        return Response(orjson.dumps({"success": True, "records": records}), 200, media_type=JSON)

    def _export(self, customer: str) -> dict[str, Any] | None:
        with self.store.connect() as conn:
            return customer_export(conn, customer)
