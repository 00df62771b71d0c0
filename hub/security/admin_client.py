"""The local admin client: made on first start so the embedded default is never open.

Its secret is written once to a file only the owner can read (mode 0600, next to the SQLite
store by default, or HUB_ADMIN_CREDENTIALS), and said where; the store keeps only a hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import Engine

from hub.security import clients
from hub.security.scopes import ADMIN, SENSITIVE

ADMIN_CLIENT_ID = "hub-admin"
ADMIN_SCOPES = f"system/*.cruds {SENSITIVE} {ADMIN}"


def credentials_path(db_url: str, configured: str | None = None) -> Path:
    if configured:
        return Path(configured)
    if db_url.startswith("sqlite:///") and not db_url.startswith("sqlite:////:memory:"):
        store = Path(db_url.removeprefix("sqlite:///"))
        return store.with_name(store.name + ".admin.json")
    return Path.home() / ".config" / "county-records-hub" / "admin.json"


def ensure_admin_client(engine: Engine, path: Path) -> Path | None:
    """Make the admin client if the store has none; the credentials file made, or None."""
    with engine.connect() as conn:
        if clients.get(conn, ADMIN_CLIENT_ID) is not None:
            return None
    secret = clients.new_secret()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Create the file 0600 before anything is in it: no moment where others could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"client_id": ADMIN_CLIENT_ID, "client_secret": secret}, fh)
    os.chmod(path, 0o600)
    clients.put(
        engine, ADMIN_CLIENT_ID, name="local administrator", org=None, roles={"admin"},
        scopes=ADMIN_SCOPES, secret=secret,
    )  # fmt: skip
    return path


def read_credentials(path: Path) -> tuple[str, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return str(data["client_id"]), str(data["client_secret"])
