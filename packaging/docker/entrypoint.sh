#!/bin/sh
# The container's entry (under tini): a PulseAudio daemon for the sessions' audio sinks, then
# the supervised host. Arguments are `punktfunk service run` flags, e.g. --pin 1234.
set -e
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
if command -v pulseaudio >/dev/null 2>&1 && ! pactl info >/dev/null 2>&1; then
    # Started before the supervisor, so it is not part of the host it restarts.
    pulseaudio --start --exit-idle-time=-1 \
        || echo "punktfunk-entrypoint: PulseAudio did not start; sessions get a test tone" >&2
fi
exec punktfunk service run "$@"
