"""Start-up settings of the emulator: credentials, paths, limits and initial faults."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

from cloudinary_emulator.faults import Faults

DEFAULT_CLOUD_NAME = "demo"
DEFAULT_API_KEY = "123123123123"
DEFAULT_API_SECRET = "emulator-secret"


@dataclass
class Settings:
    """Everything the app needs; built once by ``__main__`` (or a test) and never mutated."""

    cloud_name: str = DEFAULT_CLOUD_NAME
    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    data_dir: str = "var/cloudinary"
    host: str = "127.0.0.1"
    port: int = 9443
    # "host:port" put into delivery URLs; None means the Host header of the request.
    public_host: str | None = None
    max_file_size: int = 20 * 1024 * 1024
    # Cloudinary's free plan: 25 megapixels per image.
    max_megapixels: float = 25.0
    # None accepts SHA-1 and SHA-256 signatures alike; "sha1"/"sha256" pins one algorithm
    # (and is used for notification signatures; SHA-1 otherwise, as on Cloudinary).
    signature_algorithm: str | None = None
    notification_retries: int = 3
    notification_retry_delay: float = 0.5
    notification_timeout: float = 10.0
    notification_workers: int = 4
    #: Request threads: a call hung by ``hang_calls`` holds one, so there are plenty.
    threads: int = 64
    faults: Faults = field(default_factory=Faults)

    @property
    def notification_algorithm(self) -> str:
        """Digest used to sign outgoing notifications."""
        return self.signature_algorithm or "sha1"


def credentials_from_url(url: str) -> dict[str, str]:
    """Read cloud name, API key and secret from a ``cloudinary://KEY:SECRET@CLOUD`` URL."""
    parsed = urlparse(url)
    if parsed.scheme != "cloudinary" or not parsed.hostname:
        raise ValueError("CLOUDINARY_URL must look like cloudinary://KEY:SECRET@CLOUD")
    out: dict[str, str] = {"cloud_name": parsed.hostname}
    if parsed.username:
        out["api_key"] = parsed.username
    if parsed.password:
        out["api_secret"] = parsed.password
    return out


def env_credentials() -> dict[str, str]:
    """Credentials from the ``CLOUDINARY_URL`` environment variable, if set."""
    url = os.environ.get("CLOUDINARY_URL")
    return credentials_from_url(url) if url else {}
