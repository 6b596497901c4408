"""Admin API: Basic auth, the hourly call budget, resources, listings by tag, deletion."""
from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import replace
from datetime import datetime, timezone
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, Response, jsonify, request

from cloudinary_emulator.errors import CloudinaryError, error_response
from cloudinary_emulator.faults import BudgetDecision
from cloudinary_emulator.params import RESOURCE_TYPES, is_true, validate_type
from cloudinary_emulator.resources import asset_response, derived_entry, listing_entry
from cloudinary_emulator.state import check_cloud, inject_api_faults, state, wait_out_cut_link
from cloudinary_emulator.storage import Asset, Listing, sort_key
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
            wait_out_cut_link()
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
    with_context = is_true(args.get("context", "false"))
    body: dict[str, Any] = {"resources": [listing_entry(a, with_tags, with_context) for a in assets]}
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
    storage = state().storage
    asset = storage.get(type_, public_id, resource_type)
    if asset is None:
        raise CloudinaryError(404, f"Resource not found - {public_id}")
    body = asset_response(asset, request.args.to_dict(), upload=False)
    body["derived"] = [derived_entry(asset, d) for d in storage.list_derived(asset)]
    return body


# Cloudinary deletes at most this many per call and says "partial" with a cursor for the rest.
DELETE_BATCH = 1000


def body_params() -> dict[str, Any]:
    """The JSON body the SDK sends with DELETE, POST and PUT (1.42.2+), else form or query values."""
    payload = request.get_json(silent=True) if request.is_json else None
    if request.is_json and request.get_data() and payload is None:
        raise CloudinaryError(400, "Invalid JSON body")
    if isinstance(payload, dict):
        return payload
    values = request.values
    params: dict[str, Any] = {k: values.get(k) for k in values if not k.endswith("[]")}
    if "public_ids[]" in values:
        params["public_ids"] = values.getlist("public_ids[]")
    return params


def delete_assets(assets: list[Asset], more: bool) -> dict[str, Any]:
    storage = state().storage
    deleted: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for asset in assets:
        derived = storage.delete(asset.type, asset.public_id, asset.resource_type)
        deleted[asset.public_id] = "not_found" if derived is None else "deleted"
        counts[asset.public_id] = {"original": int(derived is not None), "derived": derived or 0}
    body: dict[str, Any] = {"deleted": deleted, "deleted_counts": counts, "partial": more}
    if more and assets:
        body["next_cursor"] = encode_cursor(sort_key(assets[-1], True))
    return body


@admin_api.delete("/v1_1/<cloud>/resources/<resource_type>/<type_>")
@admin_call("admin_delete_resources")
def delete_resources(resource_type: str, type_: str) -> dict[str, Any]:
    """``delete_resources`` (public_ids), ``delete_resources_by_prefix``, ``delete_all_resources``."""
    validate_resource_type(resource_type)
    validate_type(type_)
    params = body_params()
    public_ids = params.get("public_ids")
    if public_ids is not None:
        if isinstance(public_ids, str):
            public_ids = [public_ids]
        if not public_ids or not isinstance(public_ids, list) \
                or not all(isinstance(p, str) for p in public_ids):
            raise CloudinaryError(400, "Must specify public_ids, prefix or all")
        if len(public_ids) > 100:
            raise CloudinaryError(400, "Too many public_ids (at most 100)")
        storage = state().storage
        found = {pid: storage.get(type_, pid, resource_type) for pid in public_ids}
        body = delete_assets([a for a in found.values() if a is not None], False)
        for pid, asset in found.items():
            if asset is None:
                body["deleted"][pid] = "not_found"
                body["deleted_counts"][pid] = {"original": 0, "derived": 0}
        body["deleted"] = {pid: body["deleted"][pid] for pid in public_ids}
        return body
    prefix = params.get("prefix")
    if prefix is None and not is_true(params.get("all")):
        raise CloudinaryError(400, "Must specify public_ids, prefix or all")
    return delete_listed(Listing(resource_type, type=type_, prefix=str(prefix or ""),
                                 descending=False, limit=DELETE_BATCH))


@admin_api.delete("/v1_1/<cloud>/resources/<resource_type>/tags/<path:tag>")
@admin_call("admin_delete_resources")
def delete_resources_by_tag(resource_type: str, tag: str) -> dict[str, Any]:
    validate_resource_type(resource_type)
    return delete_listed(Listing(resource_type, tag=tag, prefix="", descending=False,
                                 limit=DELETE_BATCH))


def delete_listed(query: Listing) -> dict[str, Any]:
    assets, more = state().storage.list(query)
    return delete_assets(assets, more)


# -- upload presets ------------------------------------------------------------------------

PRESET_FLAGS = ("unsigned", "disallow_public_id", "live", "name")


def preset_body(name: str, unsigned: bool, settings: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "unsigned": unsigned, "settings": settings}


def preset_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The upload parameters a preset stores (what the SDK sends besides the preset's flags)."""
    return {k: v for k, v in params.items() if k not in PRESET_FLAGS and v not in (None, "")}


@admin_api.get("/v1_1/<cloud>/upload_presets")
@admin_call("admin_upload_presets")
def upload_presets() -> dict[str, Any]:
    return {"presets": [preset_body(*p) for p in state().storage.list_presets()]}


@admin_api.get("/v1_1/<cloud>/upload_presets/<name>")
@admin_call("admin_upload_presets")
def upload_preset(name: str) -> dict[str, Any]:
    found = state().storage.get_preset(name)
    if found is None:
        raise CloudinaryError(404, f"Upload preset {name} not found")
    return preset_body(name, *found)


@admin_api.post("/v1_1/<cloud>/upload_presets")
@admin_call("admin_upload_presets")
def create_upload_preset() -> dict[str, Any]:
    params = body_params()
    name = str(params.get("name") or "") or secrets.token_hex(5)
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,100}", name):
        raise CloudinaryError(400, f"Invalid upload preset name - {name}")
    storage = state().storage
    if storage.get_preset(name) is not None:
        raise CloudinaryError(409, f"Upload preset {name} already exists")
    storage.put_preset(name, is_true(params.get("unsigned")), preset_settings(params))
    return {"message": "created", "name": name}


@admin_api.put("/v1_1/<cloud>/upload_presets/<name>")
@admin_call("admin_upload_presets")
def update_upload_preset(name: str) -> dict[str, Any]:
    storage = state().storage
    found = storage.get_preset(name)
    if found is None:
        raise CloudinaryError(404, f"Upload preset {name} not found")
    params = body_params()
    unsigned = is_true(params["unsigned"]) if "unsigned" in params else found[0]
    storage.put_preset(name, unsigned, {**found[1], **preset_settings(params)})
    return {"message": "updated"}


@admin_api.delete("/v1_1/<cloud>/upload_presets/<name>")
@admin_call("admin_upload_presets")
def delete_upload_preset(name: str) -> dict[str, Any]:
    if not state().storage.delete_preset(name):
        raise CloudinaryError(404, f"Upload preset {name} not found")
    return {"message": "deleted"}
