#!/usr/bin/env bash
# App Service startup command: apply migrations, collect static files, serve with gunicorn.
# The database login is passwordless: django-azure-pg fetches Entra tokens for the app's
# managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER, set by App Service).
set -euo pipefail
cd "$(dirname "$0")"

python manage.py migrate --noinput
python manage.py collectstatic --noinput

# Workers: 2 x cores + 1 is gunicorn's rule of thumb; threads overlap database waits.
workers="${GUNICORN_WORKERS:-$(( $(nproc) * 2 + 1 ))}"
exec gunicorn config.wsgi \
  --bind "0.0.0.0:${PORT:-8000}" \
  --workers "$workers" \
  --threads "${GUNICORN_THREADS:-4}" \
  --timeout "${GUNICORN_TIMEOUT:-120}" \
  --access-logfile - \
  --error-logfile -
