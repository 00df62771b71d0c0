"""ASGI entry point for multi-process servers: settings come from the environment."""

from hub.app import create_app
from hub.config import load_settings
from hub.ops.logs import configure_logging

_settings = load_settings()
# A uvicorn worker process starts afresh: the parent's logging set-up is not inherited.
configure_logging(_settings.log_format or "json", _settings.log_level)
app = create_app(_settings)
