#!/usr/bin/env bash
# Make sure PostgreSQL server binaries exist; install them from the distribution if not.
set -euo pipefail
if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then exit 0; fi
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; then exit 0; fi
echo "PostgreSQL server binaries not found; installing them" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "Not root: install PostgreSQL (e.g. sudo apt-get install postgresql) or set PG_BINDIR" >&2
  exit 1
fi
if command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
else
  echo "No apt-get here: install PostgreSQL server binaries and set PG_BINDIR" >&2
  exit 1
fi
