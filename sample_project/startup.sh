#!/usr/bin/env bash
# App Service startup command: serve with gunicorn. Nothing else belongs here:
# - migrations run in the deploy step (deploy.sh, the azd predeploy hook: the package's
#   `manage.py migrate_locked`), as the tables' owner: the app's role here gets DML only
#   (grant_aad_privileges), so it could not migrate, and migrating at every container start
#   counts against the start limit. (An app whose runtime identity may migrate can start
#   with `python manage.py migrate_locked --noinput && exec gunicorn ...`: with several
#   instances, one migrates and the others wait — docs/deploy-your-app.md.)
# - collectstatic ran in App Service's build: Oryx runs it for Django apps unless
#   DISABLE_COLLECTSTATIC is set (Microsoft/Oryx wiki, "Django Tips").
# The database login is passwordless: django-azure-pg fetches Entra tokens for the app's
# managed identity (IDENTITY_ENDPOINT/IDENTITY_HEADER, set by App Service).
set -euo pipefail
cd "$(dirname "$0")"

# Workers: 2 x cores + 1 is gunicorn's rule of thumb; threads overlap database waits.
workers="${GUNICORN_WORKERS:-$(( $(nproc) * 2 + 1 ))}"
exec gunicorn config.wsgi \
  --bind "0.0.0.0:${PORT:-8000}" \
  --workers "$workers" \
  --threads "${GUNICORN_THREADS:-4}" \
  --timeout "${GUNICORN_TIMEOUT:-120}" \
  --access-logfile - \
  --error-logfile -
