"""Where pairing PINs come from: a preset one (--pair-pin / PUNKTFUNK_PAIR_PIN, for automation)
or one a person enters while a client waits (`punktfunk pair <PIN>` over the admin socket)."""

from __future__ import annotations

import logging
import re
import threading

from ..log import event

_log = logging.getLogger("punktfunk.gamestream.pins")

PIN_WAIT_S = 120.0
_PIN = re.compile(r"^\d{4,8}$")


def valid_pin(text: str) -> bool:
    return bool(_PIN.match(text))


class PinBox:
    def __init__(self, preset: str = "", wait_s: float = PIN_WAIT_S) -> None:
        if preset and not valid_pin(preset):
            raise ValueError("a pairing PIN is 4 to 8 digits")
        self._preset = preset
        self._wait_s = wait_s
        self._cond = threading.Condition()
        self._entered: str | None = None
        self.waiting: list[str] = []

    def submit(self, pin: str) -> None:
        """A PIN typed by a person for the client that is waiting now."""
        if not valid_pin(pin):
            raise ValueError("a pairing PIN is 4 to 8 digits")
        with self._cond:
            self._entered = pin
            self._cond.notify_all()

    def wait_for_pin(self, unique_id: str, device_name: str) -> str | None:
        if self._preset:
            return self._preset
        with self._cond:
            self.waiting.append(device_name)
            event(
                _log,
                "pairing.waiting_for_pin",
                client=device_name,
                hint="run `punktfunk pair <PIN>` with the PIN the client shows",
            )
            try:
                if not self._cond.wait_for(lambda: self._entered is not None, self._wait_s):
                    return None
                pin, self._entered = self._entered, None
                return pin
            finally:
                self.waiting.remove(device_name)
