"""Liveness and readiness for load balancers and ``make run``."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from common import db

bp = Blueprint("health", __name__)


@bp.get("/health")
def health() -> Response:
    with db.session_scope() as session:
        session.execute(text("SELECT 1"))
    return jsonify({"status": "ok"})
