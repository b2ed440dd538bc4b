"""xorg-dummy: each monitor is a real Xorg server with the `dummy` video driver.

The dummy driver accepts any mode through RandR (plain `xrandr --newmode/--addmode/--output
--mode` works, as for a game), up to the video memory configured here (enough for 7680x4320).
Frames are copied with MIT-SHM when DAMAGE says something changed. Xorg runs without a VT or
input devices (`-novtswitch -sharevts`, no hotplug); XTEST still injects input.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ...base import DisplayBackend, DisplayMode
from ...xserver import XServerError, make_workdir, start_server
from . import BackendError
from .xscreen import XScreenSource

# 7680x4320 at 4 bytes per pixel is 129600 KiB; leave room for pixmaps.
VIDEO_RAM_KIB = 256_000

XORG_CONF = f"""\
Section "ServerFlags"
    Option "AutoAddDevices" "false"
    Option "AutoEnableDevices" "false"
    Option "DontVTSwitch" "true"
    Option "BlankTime" "0"
    Option "StandbyTime" "0"
    Option "SuspendTime" "0"
    Option "OffTime" "0"
EndSection
Section "Device"
    Identifier "pf-dummy"
    Driver "dummy"
    VideoRam {VIDEO_RAM_KIB}
EndSection
Section "Monitor"
    Identifier "pf-monitor"
    HorizSync 1.0 - 10000.0
    VertRefresh 1.0 - 1000.0
EndSection
Section "Screen"
    Identifier "pf-screen"
    Device "pf-dummy"
    Monitor "pf-monitor"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
    EndSubSection
EndSection
"""


def xorg_binary() -> str | None:
    return shutil.which("Xorg")


class XorgDummyBackend:
    name = DisplayBackend.XORG_DUMMY
    renders_hdr = False

    def __init__(self, auth_dir: Path | None = None) -> None:
        self.auth_dir = auth_dir  # where its X servers' cookies go (None: their work dir)

    def create(self, monitor_id: int, mode: DisplayMode, hdr: bool) -> XScreenSource:
        binary = xorg_binary()
        if binary is None:
            raise BackendError("Xorg is not installed (apt-get install xserver-xorg-video-dummy)")
        workdir = make_workdir("xorg", Path("/dev/shm"))
        config = workdir / "xorg.conf"
        config.write_text(XORG_CONF)
        (workdir / "conf.d").mkdir()

        def argv(number: int) -> list[str]:
            return [
                binary,
                f":{number}",
                "-config",
                str(config),
                "-configdir",
                str(workdir / "conf.d"),
                "-logfile",
                str(workdir / "Xorg.log"),
                "-noreset",
                "-nolisten",
                "tcp",
                "+extension",
                "RANDR",
                "-novtswitch",
                "-sharevts",
                "-dpi",
                "96",
            ]

        try:
            server = start_server(
                "Xorg", argv, workdir, log_path=workdir / "Xorg.log", auth_dir=self.auth_dir
            )
        except XServerError as exc:
            raise BackendError(str(exc)) from None
        return XScreenSource(server, mode)
