#!/usr/bin/env bash
# `make run`: the whole stack on one machine, from nothing. Embedded defaults: SQLite under var/,
# a private Redis when no broker is configured or reachable, the Cloudinary emulator when no
# CLOUDINARY_URL is set. The environment chosen is written to .env (ENV_FILE), so that every
# `flask --app web ...` run from this checkout in another terminal uses the same database,
# broker and Cloudinary. Then honcho runs the Procfile.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
ENV_FILE="${ENV_FILE:-.env}"
case "$ENV_FILE" in */*) env_ref="$ENV_FILE" ;; *) env_ref="./$ENV_FILE" ;; esac  # `. name` would search PATH

export WEB_PORT="${WEB_PORT:-5000}" FLOWER_PORT="${FLOWER_PORT:-5555}" EMULATOR_PORT="${EMULATOR_PORT:-9443}"
export PUBLIC_URL="${PUBLIC_URL:-http://127.0.0.1:${WEB_PORT}}"
export FLOWER_USER="${FLOWER_USER:-admin}" FLOWER_PASSWORD="${FLOWER_PASSWORD:-admin}"
# Spelled out (it is common.config's default) so that .env names the very file.
export DATABASE_URL="${DATABASE_URL:-sqlite:///$PWD/var/album.db}"

broker="$(python scripts/services.py redis --dir var/redis)"
export CELERY_BROKER_URL="$broker" REDIS_URL="${REDIS_URL:-$broker}"

processes="web worker io_worker beat flower"
if [ -z "${CLOUDINARY_URL:-}" ]; then
  export CLOUDINARY_URL="cloudinary://123123123123:emulator-secret@demo?upload_prefix=http://127.0.0.1:${EMULATOR_PORT}&cname=127.0.0.1:${EMULATOR_PORT}&secure=false"
  processes="cloudinary $processes"
  echo "No CLOUDINARY_URL: using the embedded Cloudinary emulator on 127.0.0.1:${EMULATOR_PORT}"
fi

# Every variable the processes read (README, "Configuration"; tests/web/test_second_terminal.py
# checks that common.config reads no other) that is set here.
SETTINGS="APP_ENV DATABASE_URL CELERY_BROKER_URL REDIS_MASTER_NAME REDIS_URL CLOUDINARY_URL CLOUDINARY_CALL_TIMEOUT JWT_SECRET PUBLIC_URL TOKEN_TTL
  UPLOAD_FORM_TTL BROKER_VISIBILITY_TIMEOUT WEBHOOK_MAX_AGE DUPLICATE_THRESHOLD DROP_SAME_BYTES STAGE_LEASE HEAL_INTERVAL
  RETRY_WINDOW RETRY_BACKOFF_MAX RECOUNT_DEBOUNCE RECONCILE_COALESCE ACTIVE_ALBUM_WINDOW RECONCILE_INTERVAL
  FULL_RECONCILE_INTERVAL RECONCILE_OVERLAP ADMIN_BUDGET_RESERVE VIEW_COUNTING VIEW_WINDOW VIEW_FOLD_INTERVAL
  FLOWER_USER FLOWER_PASSWORD
  WEB_PORT WEB_CONCURRENCY WEB_THREADS FLOWER_PORT EMULATOR_PORT FAST_CONCURRENCY IO_CONCURRENCY"

env_line() {  # NAME='value': python-dotenv, honcho and POSIX shells all read it the same way
  case "$2" in *"'"*) echo "run.sh: $1 contains a single quote, which .env cannot hold" >&2; exit 1 ;; esac
  printf "%s='%s'\n" "$1" "$2"
}

(
  umask 077  # it holds CLOUDINARY_URL's API secret (and JWT_SECRET when set)
  {
    echo "# Written by \`make run\` ($(date -u +%Y-%m-%dT%H:%M:%SZ)): the environment of the stack it started."
    echo "# \`flask --app web ...\` run from this checkout reads it; for curl or celery: set -a; . ./.env; set +a"
    echo "# Rewritten on every \`make run\`; a variable set in your shell wins over this file."
    for name in $SETTINGS; do
      if [ -n "${!name:-}" ]; then env_line "$name" "${!name}"; fi
    done
  } > "$ENV_FILE.tmp"
  mv "$ENV_FILE.tmp" "$ENV_FILE"
)

# This script's environment is the one that counts: no leftover from an older .env.
FLASK_SKIP_DOTENV=1 flask --app web db upgrade
demo="$(FLASK_SKIP_DOTENV=1 flask --app web demo --ttl 86400)"
page="$(printf '%s\n' "$demo" | sed -n 's/^upload page: //p')"
token="$(printf '%s\n' "$demo" | sed -n 's/^token: *//p')"
env_line TOKEN "$token" >> "$ENV_FILE"

cat <<MSG

==============================================================================
 Album pipeline is starting (Ctrl-C stops everything).

 Upload page:  $page
 Flower:       http://127.0.0.1:${FLOWER_PORT}/   (user ${FLOWER_USER}, password ${FLOWER_PASSWORD})
 API:          ${PUBLIC_URL}/api/v1/albums/00100000123BB25   (reference: ${PUBLIC_URL}/api/docs)

 Demo token (album 00100000123BB25, all rights, 24 h; TOKEN in ${ENV_FILE}):
   $token
 Try:  curl -X POST -H 'Authorization: Bearer $token' ${PUBLIC_URL}/api/v1/albums/00100000123BB25/upload_done

 Another terminal:  cd $PWD && . .venv/bin/activate
   flask --app web ... reads ${ENV_FILE} by itself; for \$TOKEN in curl:  set -a; . ${env_ref}; set +a
==============================================================================

MSG
# The processes get this script's environment (what .env says, less the demo token).
exec honcho start --env /dev/null $processes
