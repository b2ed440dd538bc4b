"""End to end: the native controller backs off on rising delay before any loss (issue 13).

A real host (`test_send_limit`) streams the pattern display to the in-process native client,
which acks each clean frame (Feedback `acked`); the host times frame sent -> ack. Mid-stream
the admin command `testlimit 1500 queue 1000` puts a 1500 kbps link behind a 1 s FIFO on the
host's video path: above that rate, packets wait (the delay grows) and only a full FIFO drops.
The first bitrate cut after the limit must give delay as its reason, with no loss reported
before it, and the rate must settle below the link within 5 s; libx264 takes each change live
(one encoder open in the whole session).
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

from punktfunk.service.admin import request
from test_bottleneck_e2e import PIN
from test_native_stream import NativeHost

CEILING_KBPS = 4000
LINK_KBPS = 1500
WARM_S = 4.0  # at the ceiling first, so the delay's minimum is the empty path's
SETTLE_S = 5.0
STREAM_S = 40.0  # a cap: the test stops the stream once it has seen what it needs


def test_native_backs_off_on_delay_before_loss(tmp_path: Path) -> None:
    from punktfunk.native.client.dial import pair
    from punktfunk.native.client.probe import ClientStore, client_hello, parse_mode
    from punktfunk.native.client.receiver import NativeReceiver

    host = NativeHost(tmp_path, "--test-send-limit")
    port, log = host.port, host.log
    try:
        store = ClientStore(tmp_path / "client")
        addr = ("127.0.0.1", port)
        host_fp = pair(addr, store.identity, PIN, "delay")
        hello = client_hello(parse_mode("640x480@30"), "delay", bitrate_kbps=CEILING_KBPS)
        receiver = NativeReceiver(addr, store.identity, host_fp, hello)
        runner = threading.Thread(target=receiver.run, args=(STREAM_S,))
        runner.start()
        state = tmp_path / "state"

        def rate() -> int | None:
            sessions = json.loads(request(state, "status"))["native"]["sessions"]
            return sessions[0]["bitrate_kbps"] if sessions else None

        rates: list[tuple[float, int | None]] = []
        try:
            deadline = time.monotonic() + 60
            while receiver.stats.frames_decoded < 10:
                assert runner.is_alive() and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            time.sleep(WARM_S)
            assert rate() == CEILING_KBPS, log.read_text()[-3000:]  # no queue, no backoff
            assert request(state, f"testlimit {LINK_KBPS} queue 1000").startswith("limit")
            limit_at = time.monotonic()
            while time.monotonic() - limit_at < SETTLE_S + 2:
                rates.append((time.monotonic() - limit_at, rate()))
                time.sleep(0.2)
            request(state, "testlimit off")
        finally:
            receiver.stop()
            runner.join(timeout=30)
        text = log.read_text()
        after = text[text.index("admin.testlimit kbps=1500") :]
        cut = re.search(r"session\.bitrate .*", after)
        assert cut is not None, after[:3000]
        assert "reason=delay" in cut.group(0), cut.group(0)
        before_cut = after[: cut.start()]
        lossy = [m for m in re.findall(r"loss_ppm=(\d+)", before_cut) if int(m) > 0]
        assert not lossy, before_cut  # the delay spoke first: nothing was lost yet
        settled = next((t for t, k in rates if k is not None and k <= LINK_KBPS), None)
        assert settled is not None and settled <= SETTLE_S, rates
        # libx264 took every change live: one encoder open, no IDR per change.
        assert text.count("encode.open ") == 1, re.findall(r"encode\.open .*", text)
        assert "encode.bitrate encoder=libx264" in text and "reinit=False vbv=True" in text
    finally:
        if host.proc.poll() is None:
            host.stop()
