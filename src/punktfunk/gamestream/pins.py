"""Where pairing PINs come from: a preset one (--pair-pin / PUNKTFUNK_PAIR_PIN, for automation)
or one a person enters while a client waits (`punktfunk pair <PIN>` over the admin socket).

A preset PIN is kept for many attempts, and GameStream pairing cannot keep a kept PIN secret
from a client that fails: phase 3 hands it the host's secret, so the phase-2 reply can be
checked against every PIN offline (10,000 four-digit PINs take well under a second). So the
first failed attempt that got past phase 2 disarms the preset PIN; phase 1 is refused at once
until `punktfunk pair <PIN>` re-arms it (best with a new PIN) or the host restarts. A PIN typed
for one waiting client is used once, so what a failure reveals about it is worth nothing.
"""

from __future__ import annotations

import logging
import re
import threading

from ..log import event
from ..pinlock import PinLock

_log = logging.getLogger("punktfunk.gamestream.pins")

PIN_WAIT_S = 120.0
_PIN = re.compile(r"^\d{4,8}$")


def valid_pin(text: str) -> bool:
    return bool(_PIN.match(text))


class PinBox:
    def __init__(
        self, preset: str = "", wait_s: float = PIN_WAIT_S, lock: PinLock | None = None
    ) -> None:
        if preset and not valid_pin(preset):
            raise ValueError("a pairing PIN is 4 to 8 digits")
        self.lock = lock or PinLock()  # the wrong-guess lockout the PINs are used under
        self._preset = preset  # the kept PIN: --pin, or what `punktfunk pair` re-armed it with
        self._armed = bool(preset)
        if preset:
            event(
                _log,
                "pairing.preset_pin",
                logging.WARNING,
                note="one failed GameStream pairing attempt disarms the preset PIN (the attempt "
                "exposes it to offline guessing); re-arm it with `punktfunk pair <PIN>`",
            )
        self._wait_s = wait_s
        self._cond = threading.Condition()
        self._entered: str | None = None
        self.waiting: list[str] = []

    def submit(self, pin: str) -> str:
        """A PIN typed by a person: for the client that is waiting now, or, on a host with a
        preset PIN, the kept PIN from now on (re-armed). Returns what happened, for the reply."""
        if not valid_pin(pin):
            raise ValueError("a pairing PIN is 4 to 8 digits")
        with self._cond:
            if self._preset:
                self._preset, self._armed = pin, True
                event(_log, "pairing.pin_armed", note="kept until a pairing attempt fails")
                return "PIN armed and kept until a pairing attempt fails"
            self._entered = pin
            self._cond.notify_all()
        return "PIN accepted for " + (", ".join(self.waiting) or "the next client that pairs")

    def refusal(self) -> str | None:
        """Why no pairing can start now (the preset PIN is disarmed), or None."""
        with self._cond:
            if self._preset and not self._armed:
                return (
                    "the preset PIN was disarmed after a failed attempt; "
                    "re-arm it with `punktfunk pair <PIN>`"
                )
        return None

    def disarm(self, address: str) -> bool:
        """A pairing attempt that reached phase 3 failed: a kept PIN is no longer safe.
        True when this disarmed it (logged once); a PIN typed per attempt is unaffected."""
        with self._cond:
            if not (self._preset and self._armed):
                return False
            self._armed = False
        event(
            _log,
            "pairing.pin_disarmed",
            logging.WARNING,
            address=address,
            reason="a failed attempt exposes the PIN to offline guessing; "
            "re-arm with `punktfunk pair`",
        )
        return True

    def wait_for_pin(self, unique_id: str, device_name: str) -> str | None:
        if self._preset:
            with self._cond:
                return self._preset if self._armed else None
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
