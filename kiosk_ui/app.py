"""The FastAPI app factory. No module-level app: each process builds its own."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from kiosk_ui.routes import health, roster
from kiosk_ui.services import Services

HERE = Path(__file__).parent


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="checkin-edge", version="0.1.0", docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(health.router)
    app.include_router(roster.router)
    return app
