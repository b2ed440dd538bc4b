"""Virtual displays: one monitor per client, owned by the driver process (`punktfunk vdisplay`)."""
