"""The FastAPI app factory. No module-level app: each process builds its own."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from kiosk_ui.routes import api, dashboard, geofence, health, kiosk, live, pairing, scanner
from kiosk_ui.services import Services

HERE = Path(__file__).parent


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="checkin-edge", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.state.metrics = health.metrics_registry(services)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)  # first: the door's hot path matches at once
    app.include_router(geofence.router)  # phones: signed pings, app check-in; arrivals
    app.include_router(health.router)
    dashboard.install(app)  # staff logins, the dashboard's pages and its live feed
    app.include_router(kiosk.router)
    app.include_router(live.router)
    app.include_router(pairing.router)
    app.include_router(scanner.router)  # camera scanners report their health
    return app
