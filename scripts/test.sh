#!/usr/bin/env bash
# Set everything up, then run the whole test suite (lint included). Tests that need a real
# X server, sound server or client start it themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --diff . | head -50; exit 1; }
exec .venv/bin/python -m pytest -q --durations=15 "$@"
