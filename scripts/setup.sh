#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with every dependency pinned by constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[demo,test]"
