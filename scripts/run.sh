#!/usr/bin/env bash
# `make run`: the whole stack on one machine, from nothing. Embedded defaults: SQLite under var/,
# a private Redis when no broker is configured or reachable, the Cloudinary emulator when no
# CLOUDINARY_URL is set. Then honcho runs the Procfile.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var

export WEB_PORT="${WEB_PORT:-5000}" FLOWER_PORT="${FLOWER_PORT:-5555}" EMULATOR_PORT="${EMULATOR_PORT:-9443}"
export PUBLIC_URL="${PUBLIC_URL:-http://127.0.0.1:${WEB_PORT}}"
export FLOWER_USER="${FLOWER_USER:-admin}" FLOWER_PASSWORD="${FLOWER_PASSWORD:-admin}"

broker="$(python scripts/services.py redis --dir var/redis)"
export CELERY_BROKER_URL="$broker" REDIS_URL="${REDIS_URL:-$broker}"

processes="web worker io_worker beat flower"
if [ -z "${CLOUDINARY_URL:-}" ]; then
  export CLOUDINARY_URL="cloudinary://123123123123:emulator-secret@demo?upload_prefix=http://127.0.0.1:${EMULATOR_PORT}&cname=127.0.0.1:${EMULATOR_PORT}&secure=false"
  processes="cloudinary $processes"
  echo "No CLOUDINARY_URL: using the embedded Cloudinary emulator on 127.0.0.1:${EMULATOR_PORT}"
fi

flask --app web db upgrade
demo="$(flask --app web demo --ttl 86400)"
page="$(printf '%s\n' "$demo" | sed -n 's/^upload page: //p')"
token="$(printf '%s\n' "$demo" | sed -n 's/^token: *//p')"

cat <<MSG

==============================================================================
 Album pipeline is starting (Ctrl-C stops everything).

 Upload page:  $page
 Flower:       http://127.0.0.1:${FLOWER_PORT}/   (user ${FLOWER_USER}, password ${FLOWER_PASSWORD})
 API:          ${PUBLIC_URL}/api/v1/albums/00100000123BB25   (reference: ${PUBLIC_URL}/api/docs)

 Demo token (album 00100000123BB25, all rights, 24 h):
   $token
 Try:  curl -X POST -H "Authorization: Bearer \$TOKEN" ${PUBLIC_URL}/api/v1/albums/00100000123BB25/upload_done
==============================================================================

MSG
exec honcho start $processes
