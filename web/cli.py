"""Operator and first-use commands: ``flask --app web <group> <command>``."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import or_, select

from common import db, duplicates, migrate, pipeline, tokens
from common.enqueue import BrokerUnavailable, request_reconcile, send_reprocess
from common.models import STAGE_FAILED, Album, Image, Organization
from web.auth import ALBUM_ID

DEMO_ORGANIZATION = "232678ca-60c7-4bae-a9b2-88e55d4aecdc"
DEMO_ALBUM = "00100000123BB25"
DEMO_USER = "bca5ea10-6e06-46bb-a160-d5fb669a2774"
#: Longest session an operator may issue (the API's own sessions live TOKEN_TTL, 4 h).
MAX_TOKEN_TTL = 30 * 86400
#: ``--wait``: how often the database is polled.
POLL_INTERVAL = 0.5
#: ``--wait`` exit statuses besides 0: 1 = some photo ended failed, 3 = gave up waiting.
EXIT_FAILED, EXIT_TIMEOUT = 1, 3


def register(app: Flask) -> None:
    for group in (db_group, orgs, albums, tokens_group):
        app.cli.add_command(group)
    app.cli.add_command(demo)


@click.group("db", cls=AppGroup, help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply the Alembic migrations (idempotent).")
def db_upgrade() -> None:
    url = current_app.config["SETTINGS"].database_url
    before = migrate.current_revision(url)
    migrate.upgrade(url)
    after = migrate.current_revision(url)
    if before == after:
        click.echo(f"database already at the latest migration ({after})")
        return
    click.echo(f"database upgraded from {before or 'nothing (new database)'} to {after} (latest)")
    if before is not None and before < DUPLICATE_INDEX_REVISION:
        # Photos processed before the duplicates index existed: file them now, so /duplicates
        # answers for old albums as for new ones without an operator having to know.
        with db.session_scope() as session:
            work = duplicates.hashed_image_counts(session)
        _index_albums(work)


#: The migration that created the duplicates index (revisions are zero-padded: they sort).
DUPLICATE_INDEX_REVISION = "0005"


@click.group(cls=AppGroup, help="Organizations.")
def orgs() -> None:
    pass


@orgs.command("create")
@click.option("--id", "org_id", type=click.UUID, default=None, help="UUID (random when omitted).")
@click.option("--name", default="", help="Display name (at most 200 characters).")
def orgs_create(org_id: uuid.UUID | None, name: str) -> None:
    if len(name) > 200:
        raise click.BadParameter("at most 200 characters", param_hint="--name")
    org_id = str(org_id or uuid.uuid4())
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


_WAIT = click.option("--wait", is_flag=True, help="Follow the processing to the end: a bar of processed photos; "
                     f"exit {EXIT_FAILED} if any photo ends failed (each printed with its error), {EXIT_TIMEOUT} on --timeout.")
_TIMEOUT = click.option("--timeout", type=click.FloatRange(min=1), default=1800, show_default=True,
                        help="Seconds --wait waits before giving up.")


@albums.command("reconcile")
@click.argument("album_id")
@click.option("--full", is_flag=True, help="Walk the album's whole tag, not only what is newer than the last run.")
@_WAIT
@_TIMEOUT
def albums_reconcile(album_id: str, full: bool, wait: bool, timeout: float) -> None:
    """List the album's tag on Cloudinary (on a worker) and bring in every photo no webhook brought."""
    _require_album(album_id)
    with db.session_scope() as session:
        pipeline.request_reconcile(session, album_id)
        requested = session.get(Album, album_id).reconcile_requested_at  # type: ignore[union-attr]
    try:
        queued = request_reconcile(album_id, delay=0, full=full)
    except BrokerUnavailable as exc:
        raise _broker_down(exc) from None
    if queued:
        click.echo(f"reconcile of {album_id} enqueued")
    else:
        click.echo(f"a reconcile of {album_id} is already scheduled or running (it, or the one it starts next, covers this request)")
    if wait:
        _follow(album_id, timeout, reconciled_since=requested)


@albums.command("reprocess")
@click.argument("album_id")
@click.option("--all", "everything", is_flag=True, help="Every stage of every image, not only what is missing.")
@_WAIT
@_TIMEOUT
def albums_reprocess(album_id: str, everything: bool, wait: bool, timeout: float) -> None:
    """Put the album's images back through the pipeline."""
    _require_album(album_id)
    settings = current_app.config["SETTINGS"]
    with db.session_scope() as session:
        todo = pipeline.reset_for_reprocess(session, album_id, "all" if everything else "missing",
                                            pipeline.RetryPolicy.from_settings(settings))
    try:
        enqueued = send_reprocess(todo)
    except BrokerUnavailable as exc:
        raise _broker_down(exc) from None
    click.echo(f"{len(todo)} images, {enqueued} tasks enqueued")
    if wait:
        _follow(album_id, timeout)


@albums.command("index-duplicates")
@click.argument("album_id", required=False)
@click.option("--all", "every_album", is_flag=True, help="Every album that has photos with a pHash.")
def albums_index_duplicates(album_id: str | None, every_album: bool) -> None:
    """Rebuild the duplicates index of an album (or of all): the backfill for photos processed
    before the index existed. Safe while workers run (it holds each album's index lock)."""
    if bool(album_id) == every_album:
        raise click.UsageError("give an ALBUM_ID or --all (not both)")
    if album_id:
        _require_album(album_id)
    with db.session_scope() as session:
        work = [(a, n) for a, n in duplicates.hashed_image_counts(session) if every_album or a == album_id]
    if album_id and not work:
        work = [(album_id, 0)]  # nothing hashed: the rebuild still clears what a deleted photo left
    _index_albums(work)


def _index_albums(work: list[tuple[str, int]]) -> None:
    """Rebuild each (album, photos with a pHash) of ``work``'s duplicates index, with a bar."""
    indexed = 0
    with click.progressbar(length=sum(n for _, n in work), label="indexed", show_pos=True, show_percent=True) as bar:
        for each, count in work:
            with db.session_scope() as session:  # one transaction an album: its groups change at once
                indexed += duplicates.index_album(session, each)
            bar.update(count)
    click.echo(f"{indexed} photos indexed in {len(work)} album(s)")


class _TimedOut(click.ClickException):
    exit_code = EXIT_TIMEOUT


def _broker_down(exc: BrokerUnavailable) -> click.ClickException:
    return click.ClickException(
        f"the broker (CELERY_BROKER_URL) did not take the work: {exc}. It is recorded in the database; "
        "the heal task sends it once the broker is back.")


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment.replace(tzinfo=timezone.utc) if moment is not None and moment.tzinfo is None else moment


def _follow(album_id: str, timeout: float, reconciled_since: datetime | None = None) -> None:
    """Poll the album until every photo is processed (ready or failed) and, when
    ``reconciled_since`` is given, a complete reconcile started at or after it (its photos are
    in the database before it says so); then report the failures."""
    deadline = time.monotonic() + timeout
    since = _utc(reconciled_since)
    with click.progressbar(length=0, label="processed", show_pos=True, show_percent=True) as bar:
        while True:
            with db.session_scope() as session:
                counts = pipeline.status_counts(session, album_id)
                album = session.get(Album, album_id)
                reconciled_at = _utc(album.last_reconciled_at) if album is not None else None
            total, processed = sum(counts.values()), counts["ready"] + counts["failed"]
            bar.length = total
            bar.update(processed - bar.pos)
            listed = since is None or (reconciled_at is not None and reconciled_at >= since)
            if listed and processed == total:
                break
            if time.monotonic() > deadline:
                waiting = "the reconcile has not finished" if not listed else f"{total - processed} of {total} photos still processing"
                raise _TimedOut(f"gave up after {timeout:.0f} s: {waiting} (is a worker consuming this broker?)")
            time.sleep(POLL_INTERVAL)
    failures = _failures(album_id)
    click.echo(f"{counts['ready']} ready, {len(failures)} failed")
    if failures:
        for public_id, error in failures:
            click.echo(f"  failed: {public_id}: {error or 'no error recorded'}", err=True)
        click.get_current_context().exit(EXIT_FAILED)


def _failures(album_id: str) -> list[tuple[str, str | None]]:
    with db.session_scope() as session:
        rows = session.execute(
            select(Image.public_id, Image.error)
            .where(Image.album_id == album_id, Image.deleted_at.is_(None),
                   or_(Image.metadata_status == STAGE_FAILED, Image.thumbnails_status == STAGE_FAILED))
            .order_by(Image.id)
        ).all()
    return [(public_id, error) for public_id, error in rows]


def _album_exists(album_id: str) -> bool:
    if not ALBUM_ID.match(album_id):
        return False
    with db.session_scope() as session:
        return session.get(Album, album_id) is not None


def _require_album(album_id: str, param_hint: str = "ALBUM_ID") -> None:
    if not _album_exists(album_id):
        raise click.BadParameter(f"no album {album_id!r} in {_database_name()}", param_hint=param_hint)


def _database_name() -> str:
    """The database in use, for messages (a second terminal may point elsewhere); no password."""
    from sqlalchemy.engine import make_url

    return make_url(current_app.config["SETTINGS"].database_url).render_as_string(hide_password=True)


@click.group("tokens", cls=AppGroup, help="Session tokens.")
def tokens_group() -> None:
    pass


_TTL = click.IntRange(1, MAX_TOKEN_TTL)


@tokens_group.command("issue")
@click.option("--user", required=True, help="User id (goes into the token's user_id; 1 to 64 characters).")
@click.option("--album", "album_ids", required=True, multiple=True, help="Album id (repeatable); the album must exist.")
@click.option("--ability", "abilities", multiple=True, default=("image_upload",), show_default=True,
              type=click.Choice(tokens.ABILITIES), help="Right on the albums (repeatable).")
@click.option("--ttl", type=_TTL, default=None, help=f"Lifetime in seconds, 1 to {MAX_TOKEN_TTL} (default TOKEN_TTL).")
def tokens_issue(user: str, album_ids: tuple[str, ...], abilities: tuple[str, ...], ttl: int | None) -> None:
    settings = current_app.config["SETTINGS"]
    if not user.strip() or len(user) > 64:
        raise click.BadParameter("1 to 64 characters", param_hint="--user")
    for album_id in album_ids:
        _require_album(album_id, "--album")
    token = tokens.issue_session(user, {a: abilities for a in album_ids}, settings.jwt_secret, ttl or settings.token_ttl)
    click.echo(token)


@click.command(help="Create the seed's organization and album if absent; print a token and URLs.")
@click.option("--ttl", type=_TTL, default=None, help=f"Token lifetime in seconds, 1 to {MAX_TOKEN_TTL} (default TOKEN_TTL).")
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
