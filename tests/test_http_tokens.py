"""The API's token file: hashed, named, revocable; a broken file admits nobody."""

from __future__ import annotations

from pathlib import Path

import pytest

from autonomy_controller.controller.service.tokens import Scope, TokenError, TokenStore


def test_the_file_keeps_only_the_hash_and_a_revoked_token_stays_known_as_revoked(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    token, entry = store.add("siem", [Scope.INGEST, Scope.INGEST])
    assert token not in store.path.read_text() and entry.scopes == (Scope.INGEST,)
    assert store.path.stat().st_mode & 0o077 == 0
    with pytest.raises(TokenError, match="siem"):
        store.add("siem", [Scope.READ])
    store.revoke("siem")
    found = TokenStore(store.path).find(token)
    assert found is not None and not found.active
    assert store.find(token + "x") is None
    store.add("siem", [Scope.READ])  # the name is free again once revoked


def test_a_broken_token_file_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text('{"tokens": [{"name": "x"}]}')
    with pytest.raises(TokenError, match=str(path)):
        TokenStore(path).find("aut_anything")
