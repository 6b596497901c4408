"""JSON responses as the seed has them: compact, keys in the order the code builds them,
``application/json; charset=utf-8``, and no trailing newline (Content-Length 963)."""
from __future__ import annotations

from typing import Any

from flask import Response
from flask.json.provider import DefaultJSONProvider


class SeedJSONProvider(DefaultJSONProvider):
    sort_keys = False
    compact = True
    mimetype = "application/json"

    def response(self, *args: Any, **kwargs: Any) -> Response:
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(
            self.dumps(obj, separators=(",", ":")), content_type="application/json; charset=utf-8"
        )
