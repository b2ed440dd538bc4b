"""The management console: an HTTPS REST API (OpenAPI 3), a server-sent-event stream, Prometheus
metrics and a plain HTML/JS web console, all served by one aiohttp server on its own thread and
event loop, off the frame path. See docs/console.md."""
