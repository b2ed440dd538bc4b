"""Embedding: any Python program streams itself (`punktfunk.Host`, see docs/embedding.md)."""

from .events import Button, GamepadState, InputEvent, KeyEvent, PointerMove, Scroll, Text, Touch
from .frames import Mode
from .host import Host
from .session import Session
from .source import PushSource

__all__ = [
    "Button",
    "GamepadState",
    "Host",
    "InputEvent",
    "KeyEvent",
    "Mode",
    "PointerMove",
    "PushSource",
    "Scroll",
    "Session",
    "Text",
    "Touch",
]
