"""punktfunk/2 (ALPN `pkf2`), split the way its parts divide; no subpackage imports one above
it in this list, and `wire` imports neither of the others:

- `wire`: what both ends share, sans-I/O. `registry` (every number on the wire), `tlv`,
  `messages`, `hello`, `features`, `codec` (varint type-length-value framing and typed
  messages), `packet`, `seal`, `replay` (the 30-byte media header, the TLS-exporter key schedule,
  AEAD sealing, anti-replay), `pake` (SPAKE2 PIN pairing), `dgram`, `clock`, `input`, `scroll`,
  `adaptive` (datagrams, clock sync, input as `input.rs` encodes it, the FEC rule), and the
  connection core over aioquic (`core`, `quic`).
- `host`: the host's socket shell (`server`, `router`), connections (`host`), sessions
  (`service`, `session`, `negotiate`, `sink`, `inject`, `probeburst`) and the paired-client
  store (`trust`).
- `client`: the headless client (`client`, `dial`, `receiver`, `reassembly`, `probe`) used by
  `punktfunk probe` and the viewer.

docs/wire.md describes the protocol and names the punktfunk source each fact comes from.
"""
