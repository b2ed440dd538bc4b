"""punktfunk: a low-latency game and desktop streaming host.

Every client gets its own virtual monitor at its exact mode; the host captures it, encodes it and
streams it over the native punktfunk/2 protocol or GameStream (Moonlight).
"""

__version__ = "0.1.0"
