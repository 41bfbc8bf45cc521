#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with every dependency pinned by constraints.txt.
# --with-browser also installs Debian's chromium (the HTML report's rendering test uses it; without it that
# test validates the HTML alone), best effort: a machine without apt or root just skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[demo,test]"
if [ "${1:-}" = "--with-browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: chromium could not be installed; the report test will validate the HTML only" >&2
  else
    echo "setup: no apt-get or not root; chromium skipped" >&2
  fi
fi
