"""The punktfunk/2 host: socket shell, connections, sessions, paired clients."""
