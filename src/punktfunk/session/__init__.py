"""Per-session resolution and the frame pipeline."""
