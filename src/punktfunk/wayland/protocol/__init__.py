"""pywayland bindings generated (pywayland-scanner 0.4.19) from the MIT-licensed XML in `../xml`:
wlr-screencopy and wlr-virtual-pointer (wlr-protocols b010a03), virtual-keyboard (wlroots)."""
