#!/usr/bin/env bash
# Make sure PostGIS (for the PostgreSQL the tests start) and GeoDjango's GDAL/GEOS
# libraries exist; install them from the distribution if not. Without them the
# PostGIS tests skip, saying why; so this never fails the build.
set -uo pipefail

bindir="${PG_BINDIR:-}"
if [ -z "$bindir" ]; then
  bindir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ]; then
  echo "ensure-postgis: no PostgreSQL server binaries found; PostGIS tests will skip" >&2
  exit 0
fi
major="$("$bindir/postgres" --version | sed -E 's/[^0-9]*([0-9]+).*/\1/')"
sharedir="/usr/share/postgresql/$major"

have_gis() {
  local libs
  libs="$(ldconfig -p)"
  [ -f "$sharedir/extension/postgis.control" ] &&
    grep -q 'libgdal\.so' <<<"$libs" &&
    grep -q 'libgeos_c\.so' <<<"$libs"
}

if have_gis; then exit 0; fi
echo "PostGIS or GDAL/GEOS missing for PostgreSQL $major; installing them" >&2
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "ensure-postgis: not root or no apt-get: install postgresql-$major-postgis-3" \
    "(it brings GDAL and GEOS); PostGIS tests will skip until then" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# postgresql-<major>-postgis-3 depends on libgdal and libgeos-c, which GeoDjango loads.
if ! apt-get install -y -qq --no-install-recommends "postgresql-$major-postgis-3" >/dev/null; then
  echo "ensure-postgis: could not install postgresql-$major-postgis-3; PostGIS tests will skip" >&2
fi
exit 0
