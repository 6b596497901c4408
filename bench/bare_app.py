"""The baseline for bench/webhook_ack.py: a bare Flask endpoint that reads the body and says 200."""
from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/api/v1/cloudinary")
def bare() -> Response:
    request.get_data()
    return Response('{"status":"accepted"}', content_type="application/json")
