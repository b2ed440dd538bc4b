"""punktfunk/2 as both ends share it, sans-I/O: wire objects, sealing, pairing, QUIC core."""
