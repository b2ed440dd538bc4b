"""End to end: apps from the apps file launched by a client, over both protocols' launch
paths (`punktfunk serve`, a real native client; Moonlight's launch is the same `start_app`
and is covered on a real X display in test_gamestream_displays)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from test_native_stream import PIN, NativeHost


def _wait_for_lines(path: Path, count: int, timeout: float = 15.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def test_a_native_client_launches_an_app_with_prep_and_undo_and_hears_why_one_fails(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    work = tmp_path / "work"
    work.mkdir()
    step = {"do": f"sh -c 'echo prep >> {log}'", "undo": f"sh -c 'echo undo >> {log}'"}
    apps = {"apps": [
        {"name": "Marker", "working-dir": str(work), "prep-cmd": [step],
         "cmd": f"sh -c 'echo cmd $PWD >> {log}; exec sleep 300'"},
        {"name": "Broken", "prep-cmd": [{"do": "sh -c 'echo no sink named hdmi >&2; exit 2'"}]},
    ]}  # fmt: skip
    (tmp_path / "apps.json").write_text(json.dumps(apps))
    host = NativeHost(tmp_path, "--apps-file", str(tmp_path / "apps.json"))
    try:
        code, report = host.probe("--pin", PIN, "--launch", "Marker", "--seconds", "3")
        assert code == 0 and report["frames_decoded"] > 0, report
        # Prep before the stream, the command in its working dir, undo once the session ended.
        assert _wait_for_lines(log, 3) == ["prep", f"cmd {work}", "undo"], host.text()[-3000:]
        text = host.text()
        assert "app.prep" in text and "app.start" in text and "Marker" in text
        code, report = host.probe("--pin", PIN, "--launch", "Broken", "--seconds", "3")
        assert code != 0 and "exited with 2: no sink named hdmi" in json.dumps(report), report
        assert "app.failed" in host.text()
        code, report = host.probe("--pin", PIN, "--seconds", "2")  # the host serves on
        assert code == 0 and report["frames_decoded"] > 0, report
    finally:
        host.stop()
