"""The uinput backend's bytes against the kernel's own layouts.

These machines have no /dev/uinput, so the encoding is checked two ways: against the values the
kernel headers document (x86_64), and against a C program compiled here from
/usr/include/linux/uinput.h that prints sizes, offsets and ioctl numbers and encodes the same
structs. The manager's no-uinput path is checked live.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from punktfunk.input import uinput_abi as abi
from punktfunk.input.base import PadKind, PadState
from punktfunk.input.pads import ShmPadManager, open_pad_manager
from punktfunk.input.reports import BUTTON_A, DPAD_LEFT, DPAD_UP
from punktfunk.input.uinput import (
    IDENTITIES,
    UINPUT_PATH,
    UinputPadManager,
    device_ioctls,
    state_events,
)

# Documented x86_64 values (linux/uinput.h with _IOC from asm-generic/ioctl.h).
IOCTLS = {
    "UI_DEV_CREATE": 0x5501,
    "UI_DEV_DESTROY": 0x5502,
    "UI_DEV_SETUP": 0x405C5503,
    "UI_ABS_SETUP": 0x401C5504,
    "UI_SET_EVBIT": 0x40045564,
    "UI_SET_KEYBIT": 0x40045565,
    "UI_SET_ABSBIT": 0x40045567,
    "UI_SET_MSCBIT": 0x40045568,
    "UI_SET_FFBIT": 0x4004556B,
    "UI_SET_PROPBIT": 0x4004556E,
    "UI_BEGIN_FF_UPLOAD": 0xC06855C8,
    "UI_END_FF_UPLOAD": 0x406855C9,
    "UI_BEGIN_FF_ERASE": 0xC00C55CA,
    "UI_END_FF_ERASE": 0x400C55CB,
}
SIZES = {
    "InputEvent": 24,
    "UinputSetup": 92,
    "UinputAbsSetup": 28,
    "FfEffect": 48,
    "UinputFfUpload": 104,
    "UinputFfErase": 12,
}


def test_ioctl_numbers_and_sizes_match_the_kernel_docs() -> None:
    for name, value in IOCTLS.items():
        assert getattr(abi, name) == value, name
    for name, size in SIZES.items():
        assert ctypes.sizeof(getattr(abi, name)) == size, name
    assert abi.InputEvent.type.offset == 16
    assert abi.InputEvent.value.offset == 20
    assert abi.UinputAbsSetup.absinfo.offset == 4
    assert abi.FfEffect.u.offset == 16
    assert abi.UinputFfUpload.effect.offset == 8
    assert abi.UinputFfUpload.old.offset == 56


def test_input_event_bytes() -> None:
    raw = abi.input_event(abi.EV_KEY, abi.BTN_SOUTH, 1)
    assert raw == bytes(16) + bytes.fromhex("0100 3001 01000000")
    raw = abi.input_event(abi.EV_ABS, abi.ABS_HAT0Y, -1)
    assert raw == bytes(16) + bytes.fromhex("0300 1100 ffffffff")


def test_setup_bytes() -> None:
    raw = abi.setup(abi.BUS_USB, 0x054C, 0x0CE6, 0x8111, "Pad", 16)
    assert raw[:8] == bytes.fromhex("0300 4c05 e60c 1181")
    assert raw[8:88] == b"Pad" + bytes(77)
    assert raw[88:] == (16).to_bytes(4, "little")
    raw = abi.abs_setup(abi.ABS_X, -32768, 32767, 16, 128)
    assert raw == bytes.fromhex("0000 0000") + b"".join(
        v.to_bytes(4, "little", signed=True) for v in (0, -32768, 32767, 16, 128, 0)
    )


_C_PROGRAM = r"""
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <linux/uinput.h>
static void hex(const char *name, const void *p, size_t n) {
    printf("%s ", name);
    for (size_t i = 0; i < n; i++) printf("%02x", ((const unsigned char *)p)[i]);
    printf("\n");
}
int main(void) {
    printf("UI_DEV_CREATE %lu\nUI_DEV_DESTROY %lu\nUI_DEV_SETUP %lu\n",
           (unsigned long)UI_DEV_CREATE, (unsigned long)UI_DEV_DESTROY,
           (unsigned long)UI_DEV_SETUP);
    printf("UI_ABS_SETUP %lu\nUI_SET_EVBIT %lu\nUI_SET_KEYBIT %lu\n",
           (unsigned long)UI_ABS_SETUP, (unsigned long)UI_SET_EVBIT,
           (unsigned long)UI_SET_KEYBIT);
    printf("UI_SET_ABSBIT %lu\nUI_SET_FFBIT %lu\n",
           (unsigned long)UI_SET_ABSBIT, (unsigned long)UI_SET_FFBIT);
    printf("UI_SET_MSCBIT %lu\nUI_SET_PROPBIT %lu\n",
           (unsigned long)UI_SET_MSCBIT, (unsigned long)UI_SET_PROPBIT);
    printf("UI_BEGIN_FF_UPLOAD %lu\nUI_END_FF_UPLOAD %lu\n",
           (unsigned long)UI_BEGIN_FF_UPLOAD, (unsigned long)UI_END_FF_UPLOAD);
    printf("UI_BEGIN_FF_ERASE %lu\nUI_END_FF_ERASE %lu\n",
           (unsigned long)UI_BEGIN_FF_ERASE, (unsigned long)UI_END_FF_ERASE);
    printf("InputEvent %zu\nUinputSetup %zu\nUinputAbsSetup %zu\n",
           sizeof(struct input_event), sizeof(struct uinput_setup),
           sizeof(struct uinput_abs_setup));
    printf("FfEffect %zu\nUinputFfUpload %zu\nUinputFfErase %zu\n", sizeof(struct ff_effect),
           sizeof(struct uinput_ff_upload), sizeof(struct uinput_ff_erase));
    struct input_event ev; memset(&ev, 0, sizeof ev);
    ev.type = EV_ABS; ev.code = ABS_RY; ev.value = -1234;
    hex("event", &ev, sizeof ev);
    struct uinput_setup s; memset(&s, 0, sizeof s);
    s.id.bustype = BUS_USB; s.id.vendor = 0x045e; s.id.product = 0x028e; s.id.version = 0x114;
    strcpy(s.name, "Microsoft X-Box 360 pad"); s.ff_effects_max = 16;
    hex("setup", &s, sizeof s);
    struct uinput_abs_setup a; memset(&a, 0, sizeof a);
    a.code = ABS_Z; a.absinfo.minimum = 0; a.absinfo.maximum = 255;
    hex("abs", &a, sizeof a);
    struct uinput_ff_upload u; memset(&u, 0, sizeof u);
    u.request_id = 7; u.effect.type = FF_RUMBLE; u.effect.id = 3;
    u.effect.u.rumble.strong_magnitude = 0xabcd; u.effect.u.rumble.weak_magnitude = 0x1234;
    hex("upload", &u, sizeof u);
    return 0;
}
"""


def test_encoding_matches_the_installed_kernel_headers(tmp_path: Path) -> None:
    if not shutil.which("gcc") or not Path("/usr/include/linux/uinput.h").exists():
        message = "gcc or linux-libc-dev missing: only the documented values were checked"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (scripts/setup.sh installs gcc and the kernel headers)")
        pytest.skip(message)
    (tmp_path / "abi.c").write_text(_C_PROGRAM)
    subprocess.run(["gcc", "-o", str(tmp_path / "abi"), str(tmp_path / "abi.c")], check=True)
    out = subprocess.run([str(tmp_path / "abi")], capture_output=True, text=True, check=True)
    c = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    for name in IOCTLS:
        assert getattr(abi, name) == int(c[name]), name
    for name in SIZES:
        assert ctypes.sizeof(getattr(abi, name)) == int(c[name]), name
    assert abi.input_event(abi.EV_ABS, abi.ABS_RY, -1234).hex() == c["event"]
    x360 = IDENTITIES[PadKind.XBOX360]
    ours = abi.setup(abi.BUS_USB, x360.vendor, x360.product, x360.version, x360.name, 16)
    assert ours.hex() == c["setup"]
    assert abi.abs_setup(abi.ABS_Z, 0, 255).hex() == c["abs"]
    upload = abi.UinputFfUpload.from_buffer_copy(bytes.fromhex(c["upload"]))
    assert (upload.request_id, upload.effect.type, upload.effect.id) == (7, abi.FF_RUMBLE, 3)
    rumble = upload.effect.u.rumble
    assert (rumble.strong_magnitude, rumble.weak_magnitude) == (0xABCD, 0x1234)


def test_device_identities() -> None:
    for kind, (vid, pid) in {
        PadKind.XBOX360: (0x045E, 0x028E),
        PadKind.DUALSENSE: (0x054C, 0x0CE6),
        PadKind.DUALSHOCK4: (0x054C, 0x09CC),
    }.items():
        calls = device_ioctls(IDENTITIES[kind])
        request, payload = calls[-1]
        assert request == abi.UI_DEV_SETUP
        setup = abi.UinputSetup.from_buffer_copy(payload)
        assert (setup.id.bustype, setup.id.vendor, setup.id.product) == (abi.BUS_USB, vid, pid)
        assert setup.name.decode() == IDENTITIES[kind].name
        assert (abi.UI_SET_FFBIT, abi.FF_RUMBLE) in calls
    assert IDENTITIES[PadKind.XBOX360].name == "Microsoft X-Box 360 pad"


def _events(raw: bytes) -> list[tuple[int, int, int]]:
    out = []
    for off in range(0, len(raw), 24):
        ev = abi.InputEvent.from_buffer_copy(raw, off)
        out.append((ev.type, ev.code, ev.value))
    return out


def test_state_events() -> None:
    x360 = IDENTITIES[PadKind.XBOX360]
    rest = PadState(0, 0, 0, 0, 0, 0, 0)
    pressed = PadState(BUTTON_A | DPAD_UP | DPAD_LEFT, 255, 0, -32768, 32767, 0, 0)
    events = _events(state_events(x360, rest, pressed))
    assert events == [
        (abi.EV_KEY, abi.BTN_A, 1),
        (abi.EV_ABS, abi.ABS_X, -32768),
        (abi.EV_ABS, abi.ABS_Y, -32768),  # xpad: +Y is down
        (abi.EV_ABS, abi.ABS_Z, 255),
        (abi.EV_ABS, abi.ABS_HAT0X, -1),
        (abi.EV_ABS, abi.ABS_HAT0Y, -1),
        (abi.EV_SYN, abi.SYN_REPORT, 0),
    ]
    assert state_events(x360, pressed, pressed) == b""
    ds = IDENTITIES[PadKind.DUALSENSE]
    events = _events(state_events(ds, rest, pressed))
    assert (abi.EV_KEY, abi.BTN_SOUTH, 1) in events  # cross
    assert (abi.EV_KEY, abi.BTN_TL2, 1) in events  # hid-playstation's digital L2
    assert (abi.EV_ABS, abi.ABS_X, 0) in events
    assert (abi.EV_ABS, abi.ABS_Y, 0) in events  # full up = byte 0


def test_without_uinput_the_manager_says_why_and_does_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="punktfunk")
    manager = UinputPadManager("s1", path=tmp_path / "uinput")
    assert not manager.available
    assert "does not exist" in manager.reason()
    assert "continues" in manager.reason()
    manager.arrive(0, PadKind.DUALSENSE)
    manager.update(0, PadState(BUTTON_A, 0, 0, 0, 0, 0, 0))
    manager.remove(0)
    manager.close()
    assert "pads.unavailable" in caplog.text
    assert "pads.noop op=update" in caplog.text


def test_auto_backend_follows_dev_uinput(tmp_path: Path) -> None:
    manager = open_pad_manager("s2", shm_dir=tmp_path)
    try:
        expected = UinputPadManager if UINPUT_PATH.exists() else ShmPadManager
        assert isinstance(manager, expected)
        assert manager.available
    finally:
        manager.close()
