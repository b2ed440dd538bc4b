"""Wayland: a private headless sway (the `wlroots` display backend), its IPC, screencopy capture
and virtual input. `protocol/` holds pywayland modules generated from the XML in `xml/`."""
