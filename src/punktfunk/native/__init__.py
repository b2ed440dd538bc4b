"""punktfunk/2 (ALPN `pkf2`): the native protocol's wire core, sans-I/O.

- `registry`: every number on the wire (message types and field tags, close codes, features).
- `wire`, `messages`, `hello`, `codec`: varint type-length-value framing and typed messages.
- `packet`, `seal`, `replay`: the 30-byte media header, the TLS-exporter key schedule and
  AEAD sealing, the anti-replay window.
- `pake`: SPAKE2 PIN pairing with the host's lockout gate.
- `dgram`, `clock`, `adaptive`: QUIC datagrams, clock sync, the adaptive FEC rule.
- `host`, `client`, `core`, `quic`: connection cores over aioquic for the control plane.
- `server`, `service`, `session`, `sink`, `input`, `trust`: the host's socket shell (one UDP
  socket, one thread), its sessions (VideoPipeline + native media sink, audio, input, pads,
  adaptive FEC), and the paired-client store.
- `receiver`, `reassembly`, `probe`: the headless client (`punktfunk probe`).

docs/wire.md describes the protocol and names the punktfunk source each fact comes from.
"""
