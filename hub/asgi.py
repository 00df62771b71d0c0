"""ASGI entry point for multi-process servers: settings come from the environment."""

from hub.app import create_app

app = create_app()
