"""Input injection into a session's display, and virtual gamepads."""
