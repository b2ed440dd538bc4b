"""Session audio: a per-session sink captured at 48 kHz, and microphone passthrough."""
