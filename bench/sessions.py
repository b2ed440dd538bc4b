"""Concurrent sessions: N native probe clients against one `punktfunk serve`, media workers
on and off side by side in the same run.

Two hosts run at once on loopback (pattern display, software encoder, private state dirs):
one with `--session-workers off` (every session's media in the host process) and one with
`on` (each session's media in its own worker process). For each N (`--sessions 1,2,4`) and
each host in turn, N `punktfunk probe` processes stream `--mode` for `--seconds` at once; each
reports fps, decoded fraction and host latency p50/p99. Host CPU is the CPU time of the host's
process tree (host, its media workers, the display driver) over the middle of the run, in
cores; `overhead` compares on with off per N. Prints one JSON object. The probes run on the
same cores: numbers on a shared machine move with its load, so compare within a run.

    .venv/bin/python bench/sessions.py --sessions 1,2
    .venv/bin/python bench/sessions.py --sessions 1,2,4,8,12,16 --seconds 12
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

PUNKTFUNK = str(Path(sys.executable).parent / "punktfunk")
PIN = "4321"
TICKS = os.sysconf("SC_CLK_TCK")


def _interpreter_lock() -> dict[str, bool]:
    """Whether this CPython is a free-threaded build, and whether the lock is still off once
    the host's modules are imported (an extension that does not declare itself safe without
    it turns it back on unless PYTHON_GIL=0); the hosts run with this interpreter and env."""
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if not free:
        return {"free_threaded_build": False, "gil": True}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        import punktfunk.serve  # noqa: F401  (what the host imports)
    return {"free_threaded_build": True, "gil": bool(sys._is_gil_enabled())}  # type: ignore[attr-defined]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUNKTFUNK_")}
    (root / "none.env").write_text("")
    env.update(PUNKTFUNK_STATE_DIR=str(root / "state"), PUNKTFUNK_CONFIG=str(root / "none.env"))
    return env


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                kids = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                todo += [int(k) for k in kids]
        except OSError:
            continue
    return out


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


class Host:
    def __init__(self, root: Path, workers: str) -> None:
        self.root, self.workers = root, workers
        root.mkdir(parents=True)
        self.env = _env(root)
        self.port = _free_udp_port()
        self.log = root / "host.log"
        self.proc = subprocess.Popen(
            [
                PUNKTFUNK, "serve", "--display", "pattern", "--pin", PIN,
                "--native-port", str(self.port), "--bind-address", "127.0.0.1",
                "--monitor-linger-ms", "0", "--no-mdns", "--session-workers", workers,
                "--max-monitors", "64", "--max-sessions", "64",
            ],
            env=self.env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while "host.ready" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(self.log.read_text(errors="replace")[-3000:])
            time.sleep(0.2)

    def probe(self, client: int, mode: str, seconds: float) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                PUNKTFUNK, "probe", "127.0.0.1", "--port", str(self.port), "--pin", PIN,
                "--client-dir", str(self.root / f"client{client}"), "--json",
                "--mode", mode, "--seconds", str(seconds),
            ],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def run(self, n: int, mode: str, seconds: float) -> dict[str, object]:
        probes = [self.probe(i, mode, seconds) for i in range(n)]
        # The steady middle: after every session opened, before the first one ends.
        time.sleep(min(3.0, seconds / 3))
        tree = _tree(self.proc.pid)
        wall0, cpu0, host0 = time.monotonic(), _cpu_s(tree), _cpu_s([self.proc.pid])
        time.sleep(max(1.0, seconds - min(3.0, seconds / 3) - 1.5))
        forward = self.control_forward()
        tree = [p for p in tree if Path(f"/proc/{p}").exists()]
        wall = time.monotonic() - wall0
        cpu, host = _cpu_s(tree) - cpu0, _cpu_s([self.proc.pid]) - host0
        sessions = []
        for proc in probes:
            out, err = proc.communicate(timeout=seconds + 120)
            lines = out.strip().splitlines()
            result = json.loads(lines[-1]) if lines else {"ok": False, "error": err[-300:]}
            sessions.append(
                {
                    "ok": result.get("ok"),
                    "fps": result.get("fps"),
                    "decoded_fraction": result.get("decoded_fraction"),
                    "host_latency_ms": result.get("host_latency_ms"),
                    "audio_packets": result.get("audio_packets"),
                    "error": result.get("error") or result.get("closed"),
                }
            )
        time.sleep(1.0)  # let the sessions end before the next run
        fps = [s["fps"] or 0 for s in sessions]
        p99 = [(s["host_latency_ms"] or {}).get("p99", 0) for s in sessions]
        return {
            "workers": self.workers,
            "n": n,
            "cpu_cores": round(cpu / wall, 3),
            "host_process_cores": round(host / wall, 3),
            "processes": len(tree),
            "fps_min": min(fps),
            "fps_mean": round(sum(fps) / len(fps), 2),
            "host_latency_p99_max_ms": max(p99),
            "decoded_fraction_min": min((s["decoded_fraction"] or 0) for s in sessions),
            # host -> worker control messages (keyframe asks, FEC, bitrate), send -> acted on
            "control_forward_ms": forward,
            "sessions": sessions,
        }

    def control_forward(self) -> dict[str, float] | None:
        """The worst p50 and p99 over the live sessions of host -> worker control latency
        (`control_forward`, recorded in each worker); None without workers."""
        out = subprocess.run([PUNKTFUNK, "status"], env=self.env, capture_output=True,
                             text=True, timeout=30)  # fmt: skip
        try:
            sessions = json.loads(out.stdout)["native"]["sessions"]
        except (ValueError, KeyError, TypeError):
            return None
        stages = [s["stages"]["control_forward"] for s in sessions
                  if "control_forward" in s.get("stages", {})]  # fmt: skip
        if not stages:
            return None
        return {q: round(max(st[q] for st in stages), 3) for q in ("p50", "p99")}

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,2", help="comma-separated N")
    parser.add_argument("--mode", default="1280x720@60")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="pf-sessions-") as tmp:
        hosts = [Host(Path(tmp) / "off", "off"), Host(Path(tmp) / "on", "on")]
        try:
            for host in hosts:  # pair every client once, outside the measured runs
                for i in range(max(counts)):
                    host.probe(i, args.mode, 0.5).communicate(timeout=120)
            for n in counts:
                for host in hosts:
                    runs.append(host.run(n, args.mode, args.seconds))
                    print(json.dumps({k: v for k, v in runs[-1].items() if k != "sessions"}),
                          file=sys.stderr, flush=True)  # fmt: skip
        finally:
            for host in hosts:
                host.stop()
    overhead = {}
    for n in counts:
        off = next(r for r in runs if r["n"] == n and r["workers"] == "off")
        on = next(r for r in runs if r["n"] == n and r["workers"] == "on")
        off_cpu, on_cpu = float(off["cpu_cores"]), float(on["cpu_cores"])  # type: ignore[arg-type]
        overhead[str(n)] = {
            "cpu_cores_off": off_cpu,
            "cpu_cores_on": on_cpu,
            "cpu_overhead_percent": round((on_cpu / off_cpu - 1) * 100, 1) if off_cpu else None,
        }
    print(
        json.dumps(
            {
                "cores": len(os.sched_getaffinity(0)),
                "mode": args.mode,
                "seconds": args.seconds,
                "python": sys.version.split()[0],
                **_interpreter_lock(),
                "runs": runs,
                "overhead": overhead,
            }
        )
    )


if __name__ == "__main__":
    main()
