"""Dependencies for route handlers, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from kiosk_ui.services import Services

LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def read_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with services.store.read() as session:
        yield session


def require_local(request: Request) -> None:
    """Until staff logins exist, roster pages answer only on the appliance itself."""
    host = request.client.host if request.client else ""
    if host not in LOOPBACK:
        raise HTTPException(status_code=403, detail="Open this page on the appliance itself")


ServicesDep = Annotated[Services, Depends(get_services)]
ReadSession = Annotated[Session, Depends(read_session)]
