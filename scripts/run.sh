#!/usr/bin/env bash
# Set everything up, then run the main job on the embedded default: the effective settings, the
# machine/ABI self-check, then `punktfunk demo` (a host on the built-in pattern display streaming
# to a loopback client, live stats until Ctrl-C). Extra arguments go to the demo (--seconds N).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/punktfunk config show
.venv/bin/punktfunk doctor
exec .venv/bin/punktfunk demo "$@"
