"""Bearer-token checks for the API: no or unknown or revoked token 401, a token without the scope 403."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from autonomy_controller.controller.service.state import Service
from autonomy_controller.controller.service.tokens import Scope, TokenEntry, TokenError

bearer = HTTPBearer(auto_error=False, description="A token from `autonomy tokens add NAME --scope ...`.")
CHALLENGE = {"WWW-Authenticate": "Bearer"}


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def require(scope: Scope) -> Callable[..., Awaitable[TokenEntry]]:
    """A dependency that admits a request carrying an active token with `scope`, and returns its entry."""

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> TokenEntry:
        if credentials is None:
            raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)", headers=CHALLENGE)
        try:
            entry = service_of(request).tokens.find(credentials.credentials)
        except TokenError as exc:  # fail closed: a broken token file admits nobody
            raise HTTPException(503, f"token file unreadable: {exc}") from exc
        if entry is None:
            raise HTTPException(401, "unknown bearer token", headers=CHALLENGE)
        if not entry.active:
            raise HTTPException(401, f"token {entry.name!r} was revoked at {entry.revoked_at}", headers=CHALLENGE)
        if scope not in entry.scopes:
            raise HTTPException(403, f"token {entry.name!r} lacks the {scope.value!r} scope")
        return entry

    return check
