"""A small HTTP endpoint for processes without a web server of their own (workers, the bot):
``/metrics`` (Prometheus), ``/healthz`` (200 or 503, the checks as JSON: for readiness probes and
operators) and ``/livez`` (200 while the process answers at all: for liveness probes, which must not
restart a worker because Redis or the bucket is down).

It listens on ``DREAMLOOM_METRICS_HOST``, 127.0.0.1 unless a deployment opens it (Kubernetes probes and
Prometheus reach a pod on its own address). ``/healthz`` says each check's name and ``ok`` or
``unavailable``, never the details (hosts, ports, folders, buckets): those go to the log when they change,
and ``dreamloom health`` prints them."""

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

_last_logged: dict[str, str] = {}  # check name -> the detail last logged for it
_log_lock = threading.Lock()


def health_response(checks: list[Check]) -> tuple[int, bytes]:
    """(200 or 503, JSON): whether all is well and each check's name and ok/unavailable. A check's detail
    is logged when it changes (a failure as a warning), so the operator sees why without every probe
    repeating it."""
    _log_changes(checks)
    ok = all(check.ok for check in checks)
    body = {
        "ok": ok,
        "checks": [{"name": c.name, "ok": c.ok, "status": "ok" if c.ok else "unavailable"} for c in checks],
    }
    return (200 if ok else 503), json.dumps(body, indent=1).encode()


def _log_changes(checks: list[Check]) -> None:
    with _log_lock:
        changed = [check for check in checks if _last_logged.get(check.name) != check.detail]
        for check in changed:
            _last_logged[check.name] = check.detail
    for check in changed:
        if check.ok:
            log.info("health: %s ok: %s", check.name, check.detail)
        else:
            log.warning("health: %s unavailable: %s", check.name, check.detail)


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
