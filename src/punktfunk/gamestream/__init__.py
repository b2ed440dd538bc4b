"""GameStream (Moonlight) host: sans-I/O protocol cores plus thin socket shells."""
