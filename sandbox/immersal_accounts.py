"""Immersal stand-in: accounts, who is calling (by token), and /login."""
from __future__ import annotations

from typing import Any

from flask import Response

from sandbox.immersal_api import _answer


class AccountRoutes:
    """Accounts live in the options; /login hands out an account's developer token."""

    def _login_of(self, token: Any) -> str | None:
        for login, account in self.options["accounts"].items():
            if token and token == account.get("token"):
                return login
        return None

    def _user_id(self, login: str) -> int:
        return list(self.options["accounts"]).index(login) + 1

    def on_login(self, body: dict) -> Response:
        login = body.get("login")
        account = self.options["accounts"].get(login) if isinstance(login, str) else None
        if not account or not body.get("password") or body.get("password") != account.get("password"):
            return _answer("auth")
        return _answer(userId=self._user_id(login), token=account["token"],
                       banks=int(self.options["bank_max"]), level=0)
