#!/usr/bin/env bash
# Makes sure a headless-capable Chromium is on this machine for the Swagger
# UI browser test (`make e2e-ui`, run by `make test`). As root with apt-get it
# installs Debian's chromium package; otherwise it says what to install and
# exits 0: the browser test then skips itself with the same advice, so
# `make test` still passes on a machine without a browser.
# Prints the path of the browser it found, if any.
set -euo pipefail

find_chromium() {
  local bin
  for bin in ${TASKER_CHROMIUM:+"$TASKER_CHROMIUM"} chromium chromium-browser google-chrome-stable google-chrome chrome; do
    if command -v "$bin" >/dev/null 2>&1; then
      command -v "$bin"
      return 0
    fi
  done
  return 1
}

find_chromium && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Chromium not found: installing Debian's chromium package (for the Swagger UI browser test)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
  find_chromium && exit 0
fi

cat >&2 <<'MSG'
Chromium was not found, so the Swagger UI browser test will be skipped. Install it:
  Debian/Ubuntu:  sudo apt-get install chromium
  macOS:          brew install --cask chromium
or point TASKER_CHROMIUM at a Chromium or Chrome binary.
MSG
exit 0
