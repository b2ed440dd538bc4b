#!/usr/bin/env bash
# Set everything up, then run the main job on the embedded default: the effective settings and
# the machine/ABI self-check (`punktfunk demo` takes this place once the stream path exists).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/punktfunk config show
.venv/bin/punktfunk doctor
