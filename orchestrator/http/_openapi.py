"""The service's OpenAPI document, built from pydantic models of Segment's call shapes and the answers.

The models only document: the handlers read each call themselves (so one bad call in a batch is refused
alone, with its reason, instead of the whole request), with the checks of file ingest.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from orchestrator import __version__

_REF = "#/components/schemas/{model}"


class _Call(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str = Field(min_length=1, description="The customer's id: the engine keys customers by it.")
    anonymousId: str | None = Field(None, description="Accepted and not stored.")
    timestamp: str | None = Field(
        None,
        description="When it happened, ISO-8601 with a time zone (default: when received). From 1970 to one "
        "day ahead.",
        json_schema_extra={"format": "date-time"},
    )
    messageId: str | None = Field(
        None, description="The call's own id: a call whose messageId was stored before is not stored again."
    )
    context: dict[str, Any] | None = Field(None, description="Accepted and not stored.")
    integrations: dict[str, Any] | None = Field(None, description="Accepted and not stored.")


class TrackCall(_Call):
    """An event the customer did."""

    event: str = Field(min_length=1, description="The event's name, as journeys and signals name it.")
    properties: dict[str, Any] | None = None


class IdentifyCall(_Call):
    """Who the customer is: ``email``, ``phone``, ``push_token``, ``timezone`` (IANA) and
    ``consent_email``/``consent_sms``/``consent_push`` set the customer's fields; other traits are
    attributes."""

    traits: dict[str, Any] | None = None


class PageCall(_Call):
    """A page view: stored as the event ``page`` (``name`` and ``category`` join its properties)."""

    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class ScreenCall(_Call):
    """A screen view: stored as the event ``screen`` (``name`` joins its properties)."""

    name: str | None = None
    properties: dict[str, Any] | None = None


class BatchTrack(TrackCall):
    type: Literal["track"]


class BatchIdentify(IdentifyCall):
    type: Literal["identify"]


class BatchPage(PageCall):
    type: Literal["page"]


class BatchScreen(ScreenCall):
    type: Literal["screen"]


class BatchRequest(BaseModel):
    """Calls of any kind, each with its ``type``; at most 500 KB in all and 32 KB per call."""

    model_config = ConfigDict(extra="allow")

    batch: list[Annotated[BatchTrack | BatchIdentify | BatchPage | BatchScreen, Field(discriminator="type")]]
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None


class Rejected(BaseModel):
    index: int = Field(description="The call's position in the request (0 for a single call).")
    reason: str = Field(description="Why it was refused (never a value from the call).")


class Accepted(BaseModel):
    """Every accepted call is committed to the store before this answer."""

    success: bool = Field(description="True when no call was rejected.")
    accepted: int = Field(description="Calls stored: events stored, identifies applied.")
    duplicates: int = Field(description="Events not stored again: their messageId was stored before.")
    stale: int = Field(description="Identifies older than the customer's stored record: valid, not applied.")
    rejected: list[Rejected] = Field(description="Calls refused, each with its reason; the others are kept.")


class Problem(BaseModel):
    success: Literal[False] = False
    error: str


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    store: bool = Field(description="The store answered.")
    health: dict[str, Any] | None = Field(
        None, description="As `orchestrator status` reports it: failed journeys, the last tick's age."
    )


_MODELS: list[type[BaseModel]] = [
    TrackCall,
    IdentifyCall,
    PageCall,
    ScreenCall,
    BatchRequest,
    Accepted,
    Rejected,
    Problem,
    Health,
    Readiness,
]


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=schema)}}},
    }


def _event_operation(summary: str, body: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "security": [{"writeKey": []}],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=body)}}},
        },
        "responses": {
            "200": _json("Accepted", "Committed; calls refused are listed with their reasons."),
            "400": _json("Problem", "Not JSON, not an object, or (single calls) the call was refused."),
            "401": _json("Problem", "No write key, or not one of the configured keys."),
            "413": _json("Problem", "The request is over 500 KB (a single call: over 32 KB)."),
            "415": _json("Problem", "A Content-Encoding other than identity."),
            "503": _json("Problem", "The store did not take the calls; nothing was stored. Retry."),
        },
    }


def _privacy_operation() -> dict[str, Any]:
    body = {
        "type": "object",
        "properties": {"customer_id": {"type": "string", "minLength": 1}},
        "required": ["customer_id"],
    }
    return {
        "summary": "Every record the store holds about one customer (an access request)",
        "security": [{"privacyKey": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {
                "description": "The customer's records, by table.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "400": _json("Problem", "Not JSON, or no customer_id."),
            "401": _json("Problem", "No privacy key, or not one of the configured privacy keys."),
            "404": _json("Problem", "No customer has that id."),
            "413": _json("Problem", "The request is over 8 KB."),
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the event API and the operations endpoints."""
    _, defs = models_json_schema([(m, "validation") for m in _MODELS], ref_template=_REF)
    paths: dict[str, Any] = {
        "/v1/track": {"post": _event_operation("Record an event", "TrackCall")},
        "/v1/identify": {"post": _event_operation("Create or update a customer", "IdentifyCall")},
        "/v1/page": {"post": _event_operation("Record a page view", "PageCall")},
        "/v1/screen": {"post": _event_operation("Record a screen view", "ScreenCall")},
        "/v1/batch": {"post": _event_operation("Record many calls at once", "BatchRequest")},
        "/v1/privacy/export": {"post": _privacy_operation()},
        "/healthz": {
            "get": {"summary": "The process answers", "responses": {"200": _json("Health", "Alive.")}}
        },
        "/readyz": {
            "get": {
                "summary": "Store reachable, last tick recent, no failed journey",
                "responses": {
                    "200": _json("Readiness", "Ready."),
                    "503": _json("Readiness", "Not ready: the store, a stale tick or a failed journey."),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "The Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "orchestrator",
            "version": __version__,
            "description": "Segment-compatible event API of the journey orchestration engine, with health "
            "and metrics. Authenticate with HTTP Basic auth, the write key as the user name.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "writeKey": {"type": "http", "scheme": "basic"},
                "privacyKey": {"type": "http", "scheme": "basic"},
            },
        },
    }
