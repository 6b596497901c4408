"""Operator and first-use commands: ``flask --app web <group> <command>``."""
from __future__ import annotations

import time
import uuid

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from common import db, migrate, pipeline, tokens
from common.enqueue import request_reconcile, send_reprocess
from common.models import Album, Organization
from web.auth import ALBUM_ID

DEMO_ORGANIZATION = "232678ca-60c7-4bae-a9b2-88e55d4aecdc"
DEMO_ALBUM = "00100000123BB25"
DEMO_USER = "bca5ea10-6e06-46bb-a160-d5fb669a2774"


def register(app: Flask) -> None:
    for group in (db_group, orgs, albums, tokens_group):
        app.cli.add_command(group)
    app.cli.add_command(demo)


@click.group("db", cls=AppGroup, help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply the Alembic migrations (idempotent).")
def db_upgrade() -> None:
    migrate.upgrade(current_app.config["SETTINGS"].database_url)
    click.echo("database is at the latest migration")


@click.group(cls=AppGroup, help="Organizations.")
def orgs() -> None:
    pass


@orgs.command("create")
@click.option("--id", "org_id", default=None, help="UUID (random when omitted).")
@click.option("--name", default="", help="Display name.")
def orgs_create(org_id: str | None, name: str) -> None:
    org_id = org_id or str(uuid.uuid4())
    with db.session_scope() as session:
        if session.get(Organization, org_id) is None:
            session.add(Organization(id=org_id, name=name))
    click.echo(org_id)


@click.group(cls=AppGroup, help="Albums.")
def albums() -> None:
    pass


@albums.command("create")
@click.option("--id", "album_id", required=True, help="Album id ([A-Za-z0-9_-], up to 64).")
@click.option("--organization", required=True, help="Organization id.")
def albums_create(album_id: str, organization: str) -> None:
    if not ALBUM_ID.match(album_id):
        raise click.BadParameter("use letters, digits, '_' or '-' (at most 64)", param_hint="--id")
    with db.session_scope() as session:
        if session.get(Organization, organization) is None:
            raise click.BadParameter(f"no organization {organization}", param_hint="--organization")
        if session.get(Album, album_id) is None:
            session.add(Album(id=album_id, organization_id=organization))
    click.echo(album_id)


@albums.command("reconcile")
@click.argument("album_id")
@click.option("--full", is_flag=True, help="Walk the album's whole tag, not only what is newer than the last run.")
def albums_reconcile(album_id: str, full: bool) -> None:
    """List the album's tag on Cloudinary (on a worker) and bring in every photo no webhook brought."""
    if not _album_exists(album_id):
        raise click.BadParameter(f"no album {album_id}", param_hint="ALBUM_ID")
    with db.session_scope() as session:
        pipeline.request_reconcile(session, album_id)
    if request_reconcile(album_id, delay=0, full=full):
        click.echo(f"reconcile of {album_id} enqueued")
    else:
        click.echo(f"a reconcile of {album_id} is already scheduled or running")


@albums.command("reprocess")
@click.argument("album_id")
@click.option("--all", "everything", is_flag=True, help="Every stage of every image, not only what is missing.")
def albums_reprocess(album_id: str, everything: bool) -> None:
    """Put the album's images back through the pipeline."""
    if not _album_exists(album_id):
        raise click.BadParameter(f"no album {album_id}", param_hint="ALBUM_ID")
    settings = current_app.config["SETTINGS"]
    with db.session_scope() as session:
        todo = pipeline.reset_for_reprocess(session, album_id, "all" if everything else "missing",
                                            pipeline.RetryPolicy.from_settings(settings))
    enqueued = 0
    with click.progressbar(todo, label="enqueueing", show_pos=True) as bar:
        for item in bar:
            enqueued += send_reprocess([item])
    click.echo(f"{len(todo)} images, {enqueued} tasks enqueued")


def _album_exists(album_id: str) -> bool:
    if not ALBUM_ID.match(album_id):
        return False
    with db.session_scope() as session:
        return session.get(Album, album_id) is not None


@click.group("tokens", cls=AppGroup, help="Session tokens.")
def tokens_group() -> None:
    pass


@tokens_group.command("issue")
@click.option("--user", required=True, help="User id (goes into the token's user_id).")
@click.option("--album", "album_ids", required=True, multiple=True, help="Album id (repeatable).")
@click.option("--ability", "abilities", multiple=True, default=("image_upload",), show_default=True,
              type=click.Choice(tokens.ABILITIES), help="Right on the albums (repeatable).")
@click.option("--ttl", type=int, default=None, help="Lifetime in seconds (default TOKEN_TTL).")
def tokens_issue(user: str, album_ids: tuple[str, ...], abilities: tuple[str, ...], ttl: int | None) -> None:
    settings = current_app.config["SETTINGS"]
    token = tokens.issue_session(user, {a: abilities for a in album_ids}, settings.jwt_secret, ttl or settings.token_ttl)
    click.echo(token)


@click.command(help="Create the seed's organization and album if absent; print a token and URLs.")
@click.option("--ttl", type=int, default=None, help="Token lifetime in seconds (default TOKEN_TTL).")
@with_appcontext
def demo(ttl: int | None) -> None:
    settings = current_app.config["SETTINGS"]
    with db.session_scope() as session:
        if session.get(Organization, DEMO_ORGANIZATION) is None:
            session.add(Organization(id=DEMO_ORGANIZATION, name="Demo"))
            session.flush()
        if session.get(Album, DEMO_ALBUM) is None:
            session.add(Album(id=DEMO_ALBUM, organization_id=DEMO_ORGANIZATION))
    token = tokens.issue_session(
        DEMO_USER, {DEMO_ALBUM: tokens.ABILITIES}, settings.jwt_secret, ttl or settings.token_ttl, now=int(time.time())
    )
    base = settings.public_url
    click.echo(f"album:       {DEMO_ALBUM} (organization {DEMO_ORGANIZATION})")
    click.echo(f"token:       {token}")
    click.echo(f"upload page: {base}/upload_test?album={DEMO_ALBUM}&token={token}")
    click.echo(f"API:         curl -X POST -H 'Authorization: Token token=\"{token}\"' {base}/api/v1/albums/{DEMO_ALBUM}/upload_done")
