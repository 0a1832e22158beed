#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (>= 14) are on this machine, for
# `make dev` and `make test`. As root with apt-get it installs Debian's
# postgresql package; otherwise it says exactly what to install.
# taskerd finds the binaries itself (internal/pgcluster); this script only
# installs them once, before parallel test processes could race on apt.
set -euo pipefail

found() {
  local bin
  for bin in ${TASKER_PG_BINDIR:+"$TASKER_PG_BINDIR/postgres"} /usr/lib/postgresql/*/bin/postgres /usr/pgsql-*/bin/postgres \
             /opt/homebrew/opt/postgresql@*/bin/postgres /usr/local/opt/postgresql@*/bin/postgres "$(command -v postgres || true)"; do
    [ -x "$bin" ] || continue
    local major
    major=$("$bin" --version 2>/dev/null | sed -E 's/[^0-9]*([0-9]+).*/\1/')
    if [ -n "$major" ] && [ "$major" -ge 14 ]; then
      return 0
    fi
  done
  return 1
}

found && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "PostgreSQL >= 14 not found: installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
  found && exit 0
fi

cat >&2 <<'MSG'
PostgreSQL server binaries (version 14 or newer) were not found. Install them:
  Debian/Ubuntu:  sudo apt-get install postgresql
  Fedora/RHEL:    sudo dnf install postgresql-server
  macOS:          brew install postgresql@17
or point TASKER_PG_BINDIR at the folder holding postgres and initdb.
MSG
exit 1
