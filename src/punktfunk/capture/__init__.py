"""Capture: the driver's frame ring first (idd-push), direct X11 capture as the fallback."""
