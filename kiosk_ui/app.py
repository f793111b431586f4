"""The FastAPI app factory. No module-level app: each process builds its own."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from kiosk_ui import security_headers
from kiosk_ui.routes import api, dashboard, geofence, health, kiosk, live, pairing, scanner
from kiosk_ui.services import Services
from kiosk_ui.storage_errors import install as install_storage_errors
from kiosk_ui.validation_errors import install as install_validation_errors

HERE = Path(__file__).parent


def _no_telemetry() -> dict[str, Any]:
    """Newer FastAPI traces, meters and logs every request through OpenTelemetry by default. The
    appliance exports none of it (its numbers are on /metrics), and at the door that work cost
    more than the check-in's own database transaction."""
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}}


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="checkin-edge", version="0.1.0", docs_url=None, redoc_url=None, **_no_telemetry())
    app.state.services = services
    # auto_reload off: templates do not change under a running hub, and checking every file's
    # mtime on every render was a measurable share of a kiosk page's time.
    app.state.templates = Jinja2Templates(
        env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False)
    )
    app.state.metrics = health.metrics_registry(services)
    install_storage_errors(app)  # a full or read-only disk: 503 with plain words, staff alerted
    install_validation_errors(app)  # 422 without echoing the input (docs/station-api.md, "Fuzzing")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)  # first: the door's hot path matches at once
    app.include_router(geofence.router)  # phones: signed pings, app check-in; arrivals
    app.include_router(health.router)
    dashboard.install(app)  # staff logins, the dashboard's pages and its live feed
    app.include_router(kiosk.router)
    app.include_router(live.router)
    app.include_router(pairing.router)
    app.include_router(scanner.router)  # camera scanners report their health
    security_headers.install(app)  # CSP, no framing, no referrer, nosniff: on every answer
    return app
