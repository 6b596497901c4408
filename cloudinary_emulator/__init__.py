"""A local Cloudinary-compatible HTTP server for development, tests and benchmarks.

The official ``cloudinary`` SDK talks to it unchanged when configured with
``upload_prefix=http://HOST:PORT`` (Upload and Admin API) and ``cname=HOST:PORT,
secure=False`` (delivery URLs). See README.md beside this file.
"""
from __future__ import annotations

from cloudinary_emulator.settings import Settings

__all__ = ["Settings", "create_app"]


def create_app(settings: Settings | None = None):  # noqa: ANN201 - Flask is imported lazily
    """Build the emulator's Flask app (imported lazily so ``testing`` stays light)."""
    from cloudinary_emulator.app import create_app as _create_app

    return _create_app(settings)
