"""Ray token authentication for raysched's clients and local clusters.

Ray 2.60 turns token auth on by default for new local clusters; a client that connects to an
explicit address must set ``RAY_AUTH_MODE=token`` before Ray reads its config, and the REST API of
the dashboard wants ``Authorization: Bearer <token>``. The token lives where Ray looks for it:
``$RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"


def token_path() -> Path:
    return Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")


def enable_token_auth() -> None:
    """Use token auth here (unless the user chose a mode) and make sure a token exists."""
    mode = os.environ.setdefault(AUTH_MODE_ENV, "token")
    if mode.lower() != "token":
        return
    if not os.environ.get("RAY_AUTH_TOKEN"):
        path = token_path()
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    if "ray" in sys.modules:
        # Ray caches its config at import; refresh it so this process sees token mode.
        from ray._raylet import Config

        Config.initialize("")


def bearer_header() -> dict[str, str]:
    """The header the dashboard's REST API wants, or {} when auth is off."""
    if os.environ.get(AUTH_MODE_ENV, "token").lower() != "token":
        return {}
    token = os.environ.get("RAY_AUTH_TOKEN") or token_path().read_text().strip()
    return {"Authorization": f"Bearer {token}"}
