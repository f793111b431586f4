"""The staff dashboard, put together: logins, the pages, the live feed (docs/dashboard.md).

``install(app)`` is all ``create_app`` calls: the session machinery (kiosk_ui.auth), the
templates' time filters, and every dashboard router (each ``staff`` at router level, but the
login page).
"""

from __future__ import annotations

from fastapi import FastAPI

from kiosk_ui import auth
from kiosk_ui.routes import (
    dashboard_auth,
    dashboard_fix,
    dashboard_now,
    dashboard_places,
    dashboard_reports,
    dashboard_roster,
    dashboard_sync,
)
from kiosk_ui.routes.dashboard_base import install_filters

ROUTERS = (
    dashboard_auth.public,
    dashboard_auth.router,
    dashboard_now.router,
    dashboard_fix.router,
    dashboard_roster.router,
    dashboard_sync.router,
    dashboard_reports.router,
    dashboard_places.router,
)


def install(app: FastAPI) -> None:
    auth.install(app)
    install_filters(app)
    for router in ROUTERS:
        app.include_router(router)
