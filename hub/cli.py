"""The ``hub`` command: serve, migrate."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from hub.config import load_settings

app = typer.Typer(help="County medical community records hub (FHIR R4).", no_args_is_help=True)
console = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL (default sqlite:///./hub.db; env HUB_DB_URL)"),
]
ConfigOption = Annotated[
    str | None, typer.Option("--config", help="TOML config file (env HUB_CONFIG)")
]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (env HUB_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (env HUB_PORT, default 8080)")] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    workers: Annotated[int, typer.Option(help="HTTP worker processes")] = 1,
) -> None:
    """Migrate the store to the latest schema and serve the FHIR API at /fhir."""
    import os

    import uvicorn

    from hub.store.migrate import upgrade

    settings = load_settings(config, db_url=db, host=host, port=port)
    upgrade(settings.db_url)
    # Worker processes rebuild the settings from the environment.
    os.environ["HUB_DB_URL"] = settings.db_url
    if settings.config:
        os.environ["HUB_CONFIG"] = settings.config
    console.print(
        f"[green]hub[/] FHIR R4 at http://{settings.host}:{settings.port}/fhir "
        f"(store: {_redact(settings.db_url)})"
    )
    uvicorn.run(
        "hub.asgi:app" if workers > 1 else _app(settings),
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        # Request lines carry search parameters (identifiers, names): nothing clinical in logs.
        access_log=False,
    )


def _app(settings: object) -> object:
    from hub.app import create_app

    return create_app(settings)  # type: ignore[arg-type]


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def migrate(
    db: DbOption = None,
    config: ConfigOption = None,
    revision: Annotated[str, typer.Option(help="Target revision")] = "head",
) -> None:
    """Create or change the store's schema through its Alembic migrations."""
    from hub.store.migrate import current, upgrade

    settings = load_settings(config, db_url=db)
    upgrade(settings.db_url, revision)
    console.print(f"store {_redact(settings.db_url)} at revision {current(settings.db_url)}")


if __name__ == "__main__":
    app()
