#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with every dependency pinned by constraints.txt.
# --with-browser also installs Debian's chromium (the HTML report's rendering test uses it; without it that
# test validates the HTML alone) and strace (the no-packet-off-loopback test traces a selection with it),
# best effort: a machine without apt or root just skips them, and those tests say so.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[demo,test,hf,bench]"
# Our own package is installed editable, so pip compiles none of it; where PYTHONDONTWRITEBYTECODE is set (as on
# these machines) every process (the command, and each Ray worker running our code) then compiled it from
# source again, ~0.3 s of CPU each. Compiled once here; a file changed later is compiled afresh, as ever.
.venv/bin/python -m compileall -q selkd_ray cli >/dev/null
if [ "${1:-}" = "--with-browser" ] && ! { command -v chromium && command -v strace; } >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium strace >/dev/null) \
      || echo "setup: chromium or strace could not be installed; the tests that need them will say so" >&2
  else
    echo "setup: no apt-get or not root; chromium and strace skipped" >&2
  fi
fi
