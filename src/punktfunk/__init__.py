"""punktfunk: a low-latency game and desktop streaming host.

Every client gets its own virtual monitor at its exact mode; the host captures it, encodes it and
streams it over the native punktfunk/2 protocol or GameStream (Moonlight). A Python program can
also stream itself: `punktfunk.Host` (docs/embedding.md). The embedding API loads on first use,
so `import punktfunk` stays instant and imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

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
    "__version__",
]

if TYPE_CHECKING:
    from .embed import (
        Button,
        GamepadState,
        Host,
        InputEvent,
        KeyEvent,
        Mode,
        PointerMove,
        PushSource,
        Scroll,
        Session,
        Text,
        Touch,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import embed

        return getattr(embed, name)
    raise AttributeError(f"module 'punktfunk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
