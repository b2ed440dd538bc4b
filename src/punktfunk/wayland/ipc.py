"""A minimal client of sway's IPC (the i3 protocol): `i3-ipc`, u32 length, u32 type, JSON.

Only what the backend and the host's mode probe need: run commands and read the outputs.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from pathlib import Path
from typing import Any

_MAGIC = b"i3-ipc"
_HEADER = struct.Struct("=6sII")
RUN_COMMAND = 0
GET_OUTPUTS = 3
GET_TREE = 4
_MAX_REPLY = 16 << 20


class SwayIpcError(RuntimeError):
    """The compositor is unreachable or refused a command (the message says which and why)."""


class SwayIpc:
    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise SwayIpcError(f"sway IPC {path}: {exc}") from None

    def _recv(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise SwayIpcError(f"sway IPC {self.path}: connection closed")
            data += chunk
        return bytes(data)

    def request(self, kind: int, payload: str = "") -> Any:
        body = payload.encode()
        with self._lock:
            try:
                self._sock.sendall(_HEADER.pack(_MAGIC, len(body), kind) + body)
                magic, length, _ = _HEADER.unpack(self._recv(_HEADER.size))
                if magic != _MAGIC or length > _MAX_REPLY:
                    raise SwayIpcError(f"sway IPC {self.path}: malformed reply header")
                return json.loads(self._recv(length))
            except (OSError, ValueError) as exc:
                raise SwayIpcError(f"sway IPC {self.path}: {exc}") from None

    def command(self, text: str) -> None:
        """Run `text` (commands separated by `;`, run in order); raise on the first failure."""
        for result in self.request(RUN_COMMAND, text):
            if not result.get("success"):
                raise SwayIpcError(f"sway refused {text!r}: {result.get('error', '?')}")

    def outputs(self) -> list[dict[str, Any]]:
        return list(self.request(GET_OUTPUTS))

    def output(self, name: str) -> dict[str, Any] | None:
        return next((o for o in self.outputs() if o.get("name") == name), None)

    def windows(self) -> dict[str, list[int]]:
        """Workspace name -> pids of the windows mapped on it (tiled and floating)."""
        found: dict[str, list[int]] = {}

        def walk(node: dict[str, Any], workspace: str | None) -> None:
            if node.get("type") == "workspace":
                workspace = node.get("name", "")
                found.setdefault(workspace, [])
            elif node.get("pid") and workspace is not None:
                found[workspace].append(int(node["pid"]))
            for child in (*node.get("nodes", ()), *node.get("floating_nodes", ())):
                walk(child, workspace)

        walk(self.request(GET_TREE), None)
        return found

    def close(self) -> None:
        self._sock.close()
