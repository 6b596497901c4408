"""Admin API: Basic auth, the hourly call budget, resources, listings by tag, deletion."""
from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, Response, jsonify, request

from cloudinary_emulator.errors import CloudinaryError, error_response
from cloudinary_emulator.faults import BudgetDecision
from cloudinary_emulator.params import is_true, validate_type
from cloudinary_emulator.resources import asset_response, listing_entry
from cloudinary_emulator.state import check_cloud, inject_api_faults, state
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


def encode_cursor(seq: int) -> str:
    mac = hmac.new(state().cursor_key, str(seq).encode(), hashlib.sha256).hexdigest()[:16]
    return base64.urlsafe_b64encode(f"{seq}.{mac}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor points after; anything we did not issue answers 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        seq_text, mac = raw.split(".", 1)
        seq = int(seq_text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise CloudinaryError(400, f"Invalid next_cursor - {cursor}") from None
    expected = hmac.new(state().cursor_key, str(seq).encode(), hashlib.sha256).hexdigest()[:16]
    if not hmac.compare_digest(mac, expected):
        raise CloudinaryError(400, f"Invalid next_cursor - {cursor}")
    return seq


@admin_api.get("/v1_1/<cloud>/resources/image/tags/<path:tag>")
@admin_call("admin_resources_by_tag")
def resources_by_tag(tag: str) -> dict[str, Any]:
    raw_max = request.args.get("max_results", "10")
    try:
        max_results = int(raw_max)
    except ValueError:
        raise CloudinaryError(400, f"Invalid max_results - {raw_max}") from None
    if not 1 <= max_results <= 500:
        raise CloudinaryError(400, "max_results must be between 1 and 500")
    cursor = request.args.get("next_cursor")
    after = decode_cursor(cursor) if cursor else 0
    assets, more = state().storage.by_tag(tag, after, max_results)
    with_tags = is_true(request.args.get("tags", "false"))
    body: dict[str, Any] = {"resources": [listing_entry(a, with_tags) for a in assets]}
    if more and assets:
        body["next_cursor"] = encode_cursor(assets[-1].seq)
    return body


@admin_api.get("/v1_1/<cloud>/resources/image/<type_>/<path:public_id>")
@admin_call("admin_resource")
def resource(type_: str, public_id: str) -> dict[str, Any]:
    if type_ not in DELIVERY_TYPES:
        raise CloudinaryError(404, f"Resource not found - {public_id}")
    asset = state().storage.get(type_, public_id)
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
        found = storage.delete(type_, pid)
        deleted[pid] = "deleted" if found else "not_found"
        counts[pid] = {"original": int(found), "derived": 0}
    return {"deleted": deleted, "deleted_counts": counts, "partial": False}
