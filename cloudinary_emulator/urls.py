"""Delivery URLs: building them with the SDK's own helper, and taking requested paths apart."""
from __future__ import annotations

import re
from dataclasses import dataclass

from cloudinary.utils import cloudinary_url, smart_escape

from cloudinary_emulator.transform import COMPONENT_RE

DELIVERY_TYPES = ("upload", "authenticated", "private")
# Delivery of these needs a signed URL.
SIGNED_TYPES = frozenset({"authenticated", "private"})
SIGNATURE_RE = re.compile(r"^s--([A-Za-z0-9_-]{8})--$")
VERSION_RE = re.compile(r"^v[0-9]+$")
# Transformation keys Cloudinary knows; a leading path segment made of these is taken as a
# transformation (and then rejected if the emulator does not support the key), anything else
# as the start of the public_id.
CLOUDINARY_KEYS = frozenset(
    "a ac af ar b bo br c co cs d dl dn dpr du e eo f fl fn fps g h if ki l o p pg q r so sp t"
    " u vc vs w x y z".split())


@dataclass
class DeliveryPath:
    """The parts of ``[s--SIG--/][transformation/][vVERSION/]public_id[.format]``."""

    signature: str | None
    transformation: str
    version: str | None
    source: str


def build_url(*, cloud_name: str, secret: str, host: str, type_: str, public_id: str,
              fmt: str | None, version: int | None, transformation: str = "",
              signature_algorithm: str = "sha1", resource_type: str = "image") -> str:
    """The delivery URL the SDK itself would build for this asset, on the emulator's host."""
    url, _ = cloudinary_url(
        public_id, cloud_name=cloud_name, api_secret=secret, cname=host, secure=False,
        private_cdn=False, cdn_subdomain=False, secure_distribution=None, shorten=False,
        use_root_path=False, auth_token=False, long_url_signature=False,
        signature_algorithm=signature_algorithm, force_version=True, resource_type=resource_type,
        type=type_, format=fmt, version=version, raw_transformation=transformation or None,
        sign_url=type_ in SIGNED_TYPES)
    return url


def _is_transformation(segment: str) -> bool:
    if not COMPONENT_RE.match(segment):
        return False
    return all(pair.partition("_")[0] in CLOUDINARY_KEYS for pair in segment.split(","))


def parse_delivery_path(rest: str) -> DeliveryPath:
    """Split the path after ``/<cloud>/image/<type>/`` (already percent-decoded)."""
    segments = rest.split("/")
    signature = None
    match = SIGNATURE_RE.match(segments[0]) if len(segments) > 1 else None
    if match:
        signature = match.group(1)
        segments = segments[1:]
    # With a version segment, everything before it is transformation: the SDK adds v1 to any
    # public_id in a folder, so folder names never get mistaken for transformations.
    version_at = next((i for i, s in enumerate(segments[:-1]) if VERSION_RE.match(s)), None)
    if version_at is not None:
        transformation = segments[:version_at]
        version = segments[version_at][1:]
        source = segments[version_at + 1:]
    else:
        transformation = []
        while len(segments) > 1 and _is_transformation(segments[0]):
            transformation.append(segments.pop(0))
        version, source = None, segments
    return DeliveryPath(signature, "/".join(transformation), version, "/".join(source))


def string_to_sign(path: DeliveryPath) -> str:
    """What the ``s--…--`` part signs: transformation and escaped source, never the version."""
    return "/".join(p for p in (path.transformation, smart_escape(path.source)) if p)
