"""The encoder benchmark runs and prints the JSON rows the acceptance asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "encode.py"


def test_bench_json_rows() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--json",
            "--modes",
            "720p",
            "--codecs",
            "h264",
            "--frames",
            "16",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = json.loads(out.stdout)
    assert [(r["backend"], r["codec"], r["mode"]) for r in rows] == [
        ("software", "h264", "1280x720@60")
    ]
    row = rows[0]
    for key in ("convert_ms", "encode_ms", "baseline_encode_ms"):
        assert set(row[key]) == {"p50", "p99"} and row[key]["p50"] > 0
    assert row["fps"] > 0 and row["mbps"] > 0 and row["overhead"] > 0
