"""The approval inbox: server-rendered pages where a signed-in person approves or rejects pending actions.

Local accounts (argon2id, `autonomy accounts`), signed session cookies, a CSRF token on every form, and votes
through the same update and validator as `autonomy approve` (docs/http.md, "The approval inbox").
"""

from autonomy_controller.controller.service.inbox.routes import InboxConfig, router

__all__ = ["InboxConfig", "router"]
