# punktfunk host in a container: Debian 12, Xvfb and the Xorg dummy driver for the per-client
# virtual monitors, PulseAudio for audio, `punktfunk service run` (the supervisor) under tini.
#
#   docker build -t punktfunk .
#   docker run -d --name punktfunk --network host --shm-size 1g \
#       -v punktfunk-state:/var/lib/punktfunk punktfunk
#   docker exec punktfunk punktfunk pair 1234    # the PIN Moonlight shows
#
# See docs/service.md ("In a container") for the ports and settings.
FROM debian:12-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc libc6-dev linux-libc-dev \
        xvfb xserver-xorg-video-dummy x11-xserver-utils xauth \
        pulseaudio pulseaudio-utils tini \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml setup.py MANIFEST.in README.md LICENSE-MIT LICENSE-APACHE /tmp/punktfunk/
COPY src /tmp/punktfunk/src
RUN python3 -m venv /opt/punktfunk/venv \
    && /opt/punktfunk/venv/bin/pip install --no-cache-dir /tmp/punktfunk \
    && ln -s /opt/punktfunk/venv/bin/punktfunk /usr/local/bin/punktfunk \
    && rm -rf /tmp/punktfunk \
    && useradd --system --user-group --home-dir /var/lib/punktfunk --create-home \
        --shell /usr/sbin/nologin punktfunk
COPY packaging/docker/entrypoint.sh /usr/local/bin/punktfunk-entrypoint

USER punktfunk
ENV PUNKTFUNK_STATE_DIR=/var/lib/punktfunk \
    PUNKTFUNK_GAMESTREAM=true \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/punktfunk
# GameStream: HTTPS, HTTP, RTSP (tcp); video, control, audio (udp). punktfunk/2: 9777/udp.
EXPOSE 47984/tcp 47989/tcp 48010/tcp 47998-48000/udp 9777/udp
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/punktfunk-entrypoint"]
