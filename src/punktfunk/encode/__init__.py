"""Video encoding over PyAV/FFmpeg: hardware backends where they open, software otherwise."""
