#!/usr/bin/env bash
# Install the package with its test extra into .venv (created if missing), check lint, format (ruff) and
# types (mypy; settings in pyproject.toml), then run the test suite. Arguments go to pytest (e.g. -k geometry).
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
