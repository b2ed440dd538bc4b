"""Running the host as a service: the local admin socket, supervision, systemd."""
