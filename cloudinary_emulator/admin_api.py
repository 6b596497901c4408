"""Admin API: Basic auth, the hourly call budget, resources, listings by tag, deletion."""
from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import json
from dataclasses import replace
from datetime import datetime, timezone
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, Response, jsonify, request

from cloudinary_emulator.errors import CloudinaryError, error_response
from cloudinary_emulator.faults import BudgetDecision
from cloudinary_emulator.params import is_true, validate_type
from cloudinary_emulator.resources import asset_response, listing_entry
from cloudinary_emulator.state import check_cloud, inject_api_faults, state
from cloudinary_emulator.storage import Listing, sort_key
from cloudinary_emulator.urls import DELIVERY_TYPES

admin_api = Blueprint("admin_api", __name__)


def rate_limit_headers(decision: BudgetDecision) -> dict[str, str]:
    return {
        "X-FeatureRateLimit-Limit": str(decision.limit),
        "X-FeatureRateLimit-Remaining": str(decision.remaining),
        "X-FeatureRateLimit-Reset": email.utils.formatdate(decision.reset_at, usegmt=True),
    }


def admin_call(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Response]]:
    """Count, authenticate (Basic), spend the budget, inject faults, add rate-limit headers."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Response]:
        @wraps(view)
        def wrapper(cloud: str, **kwargs: Any) -> Response:
            st = state()
            st.stats.call(kind)
            st.stats.admin_call()
            faults = st.faults.get()
            decision = st.budget.peek(faults)
            try:
                check_cloud(cloud)
                auth = request.authorization
                settings = st.settings
                if auth is None or auth.type != "basic":
                    raise CloudinaryError(401, "Must supply api_key")
                if not (hmac.compare_digest(auth.username or "", settings.api_key)
                        and hmac.compare_digest(auth.password or "", settings.api_secret)):
                    raise CloudinaryError(401, "Invalid credentials")
                decision = st.budget.spend(faults)
                if not decision.allowed:
                    st.stats.rate_limited()
                    raise CloudinaryError(420, "Rate Limit Exceeded")
                inject_api_faults()
                response = jsonify(view(**kwargs))
            except CloudinaryError as exc:
                response = error_response(exc.status, exc.message, exc.headers)
            response.headers.update(rate_limit_headers(decision))
            return response

        return wrapper

    return decorate


RESOURCE_TYPES = ("image", "video", "raw")
# Cloudinary's spellings of a listing's order; newest first unless asked otherwise.
DIRECTIONS = {"desc": True, "-1": True, "asc": False, "1": False}


def _cursor_mac(payload: str) -> str:
    return hmac.new(state().cursor_key, payload.encode(), hashlib.sha256).hexdigest()[:16]


def encode_cursor(key: tuple[Any, ...]) -> str:
    """An opaque, HMAC-checked cursor holding the sort key of the last item of a page."""
    payload = json.dumps(list(key), separators=(",", ":"))
    return base64.urlsafe_b64encode(f"{payload}\n{_cursor_mac(payload)}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, by_public_id: bool) -> tuple[Any, ...]:
    """The sort key a cursor points after; anything we did not issue answers 400."""
    invalid = CloudinaryError(400, f"Invalid next_cursor - {cursor}")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        payload, mac = raw.rsplit("\n", 1)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if not hmac.compare_digest(mac, _cursor_mac(payload)):
        raise invalid
    key = tuple(json.loads(payload))
    # A cursor of a created_at listing means nothing in a public_id listing, and back.
    if len(key) != (1 if by_public_id else 2):
        raise invalid
    return key


def validate_resource_type(resource_type: str) -> str:
    if resource_type not in RESOURCE_TYPES:
        raise CloudinaryError(404, f"Invalid resource type {resource_type}")
    return resource_type


def listing_page(base: Listing) -> dict[str, Any]:
    """max_results, direction, next_cursor and tags of a listing request, then its page."""
    args = request.args
    raw_max = args.get("max_results", "10")
    try:
        max_results = int(raw_max)
    except ValueError:
        raise CloudinaryError(400, f"Invalid max_results - {raw_max}") from None
    if not 1 <= max_results <= 500:
        raise CloudinaryError(400, "max_results must be between 1 and 500")
    by_public_id = base.prefix is not None
    # By created_at the default is newest first; a prefix listing goes by public_id, A to Z.
    direction = args.get("direction", "asc" if by_public_id else "desc").strip().lower()
    if direction not in DIRECTIONS:
        raise CloudinaryError(400, f"Invalid direction - {direction}. Use asc, desc, 1 or -1")
    cursor = args.get("next_cursor")
    query = replace(base, descending=DIRECTIONS[direction], limit=max_results,
                    after=decode_cursor(cursor, by_public_id) if cursor else None)
    assets, more = state().storage.list(query)
    with_tags = is_true(args.get("tags", "false"))
    body: dict[str, Any] = {"resources": [listing_entry(a, with_tags) for a in assets]}
    if more and assets:
        body["next_cursor"] = encode_cursor(sort_key(assets[-1], by_public_id))
    return body


@admin_api.get("/v1_1/<cloud>/resources/<resource_type>/tags/<path:tag>")
@admin_call("admin_resources_by_tag")
def resources_by_tag(resource_type: str, tag: str) -> dict[str, Any]:
    return listing_page(Listing(validate_resource_type(resource_type), tag=tag))


@admin_api.get("/v1_1/<cloud>/resources/<resource_type>")
@admin_api.get("/v1_1/<cloud>/resources/<resource_type>/<type_>")
@admin_call("admin_resources")
def resources(resource_type: str, type_: str | None = None) -> dict[str, Any]:
    """``api.resources()``: by type, optionally by public_id prefix or since ``start_at``."""
    if type_ is not None:
        validate_type(type_)
    prefix = request.args.get("prefix")
    start_at = request.args.get("start_at")
    if start_at is not None:
        if prefix is not None:
            raise CloudinaryError(400, "start_at is not supported together with prefix")
        start_at = iso_param(start_at)
    return listing_page(Listing(validate_resource_type(resource_type), type=type_,
                                prefix=prefix, start_at=start_at))


def iso_param(value: str) -> str:
    """A ``start_at`` time in the form created_at has (``2024-06-25T09:25:44Z``)."""
    text = value.strip().replace(" ", "T")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CloudinaryError(400, f"Invalid start_at - {value}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@admin_api.get("/v1_1/<cloud>/resources/<resource_type>/<type_>/<path:public_id>")
@admin_call("admin_resource")
def resource(resource_type: str, type_: str, public_id: str) -> dict[str, Any]:
    validate_resource_type(resource_type)
    if type_ not in DELIVERY_TYPES:
        raise CloudinaryError(404, f"Resource not found - {public_id}")
    asset = state().storage.get(type_, public_id, resource_type)
    if asset is None:
        raise CloudinaryError(404, f"Resource not found - {public_id}")
    body = asset_response(asset, request.args.to_dict(), upload=False)
    body["derived"] = []
    return body


@admin_api.delete("/v1_1/<cloud>/resources/image/<type_>")
@admin_call("admin_delete_resources")
def delete_resources(type_: str) -> dict[str, Any]:
    validate_type(type_)
    payload = request.get_json(silent=True) if request.is_json else None
    if isinstance(payload, dict):
        public_ids = payload.get("public_ids")
    else:
        public_ids = request.values.getlist("public_ids[]") or request.values.getlist("public_ids")
    if isinstance(public_ids, str):
        public_ids = [public_ids]
    if not public_ids or not isinstance(public_ids, list) \
            or not all(isinstance(p, str) for p in public_ids):
        raise CloudinaryError(400, "Must specify public_ids, prefix or all")
    if len(public_ids) > 100:
        raise CloudinaryError(400, "Too many public_ids (at most 100)")
    storage = state().storage
    deleted: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for pid in public_ids:
        derived = storage.delete(type_, pid)
        deleted[pid] = "not_found" if derived is None else "deleted"
        counts[pid] = {"original": int(derived is not None), "derived": derived or 0}
    return {"deleted": deleted, "deleted_counts": counts, "partial": False}
