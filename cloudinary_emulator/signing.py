"""Signatures: Upload API requests, response signatures, delivery URLs and notifications.

The algorithms are the SDK's own (``cloudinary.utils``); the server only decides which
variants it accepts.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Iterable, Mapping

from cloudinary.utils import (
    SIGNATURE_SHA1,
    SIGNATURE_SHA256,
    api_string_to_sign,
    compute_hex_hash,
)

# Keys Cloudinary leaves out of the string to sign.
UNSIGNED_KEYS = frozenset({"file", "cloud_name", "resource_type", "api_key", "signature"})


@dataclass
class SignatureCheck:
    """Result of checking an Upload API signature; ``string_to_sign`` feeds the 401 message."""

    valid: bool
    string_to_sign: str


def params_to_sign(params: Mapping[str, str | list[str]]) -> dict[str, str | list[str]]:
    """Drop the keys Cloudinary never signs (empty values are dropped by api_string_to_sign)."""
    return {k: v for k, v in params.items() if k not in UNSIGNED_KEYS}


def check_request_signature(params: Mapping[str, str | list[str]], signature: str, secret: str,
                            algorithm: str | None = None) -> SignatureCheck:
    """Accept a signature that matches version 2 or 1, SHA-1 or SHA-256.

    Version 1 differs only when a value holds ``&``; accepting both keeps older SDKs working.
    ``algorithm`` pins one digest when the account is configured for it.
    """
    to_sign = params_to_sign(params)
    algorithms = [algorithm] if algorithm else [SIGNATURE_SHA1, SIGNATURE_SHA256]
    v2 = api_string_to_sign(to_sign, 2)
    candidates = {v2, api_string_to_sign(to_sign, 1)}
    given = signature.strip().lower()
    for text in candidates:
        for algo in algorithms:
            if hmac.compare_digest(compute_hex_hash(text + secret, algo), given):
                return SignatureCheck(True, v2)
    return SignatureCheck(False, v2)


def response_signature(public_id: str, version: int, secret: str) -> str:
    """The ``signature`` field of an upload answer, as verify_api_response_signature checks it."""
    return compute_hex_hash(f"public_id={public_id}&version={version}" + secret, SIGNATURE_SHA1)


def url_signature(to_sign: str, secret: str, algorithm: str = SIGNATURE_SHA1) -> str:
    """The 8 characters between ``s--`` and ``--`` of a signed delivery URL.

    Same rule as cloudinary.utils.cloudinary_url(sign_url=True), which only exposes it as part
    of a whole URL; the tests pin this function to the SDK's output.
    """
    digest = hashlib.new(algorithm, (to_sign + secret).encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest)[:8].decode("ascii")


def url_signature_matches(given: str, to_sign: str, secret: str,
                          algorithms: Iterable[str]) -> bool:
    """True when ``given`` is the short URL signature of ``to_sign`` under one of ``algorithms``."""
    return any(hmac.compare_digest(url_signature(to_sign, secret, a), given) for a in algorithms)


def notification_signature(body: str, timestamp: int, secret: str, algorithm: str) -> str:
    """``X-Cld-Signature``: a plain digest of body + timestamp + secret (not an HMAC)."""
    return compute_hex_hash(f"{body}{timestamp}{secret}", algorithm)
