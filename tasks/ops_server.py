"""A small HTTP endpoint for processes without a web server of their own (workers, the bot):
``/metrics`` (Prometheus), ``/healthz`` (200 or 503, the checks as JSON: for readiness probes and
operators) and ``/livez`` (200 while the process answers at all: for liveness probes, which must not
restart a worker because Redis or the bucket is down)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from tasks.health import Check
from tasks.metrics import exposition

__all__ = ["start_ops_server"]

log = logging.getLogger(__name__)


def health_response(checks: list[Check]) -> tuple[int, bytes]:
    body = {"ok": all(c.ok for c in checks), "checks": [c.__dict__ for c in checks]}
    return (200 if body["ok"] else 503), json.dumps(body, indent=1).encode()


def start_ops_server(
    host: str, port: int, registry: CollectorRegistry, checks: Callable[[], list[Check]]
) -> ThreadingHTTPServer:
    """Serve /metrics, /healthz and /livez on ``host:port`` from a daemon thread; returns the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                status, body, kind = 200, exposition(registry), CONTENT_TYPE_LATEST
            elif self.path.startswith("/healthz"):
                status, body = health_response(checks())
                kind = "application/json"
            elif self.path.startswith("/livez"):
                status, body, kind = 200, b"ok\n", "text/plain"
            else:
                status, body, kind = 404, b"not found: try /metrics, /healthz or /livez\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("ops server: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="dreamloom-ops", daemon=True).start()
    log.info("metrics and health on http://%s:%d/metrics and /healthz", host, server.server_port)
    return server
