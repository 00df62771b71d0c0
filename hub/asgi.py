"""ASGI entry point for multi-process servers: settings come from the environment."""

from hub.app import create_app
from hub.config import load_settings
from hub.ops.logs import configure_logging
from hub.queue import streams

_settings = load_settings()
# A uvicorn worker process starts afresh: the parent's logging set-up is not inherited.
configure_logging(_settings.log_format or "json", _settings.log_level)
app = create_app(_settings)
# With Redis, HTTP intake and FHIR writes that queue outbound work announce it from this worker
# process too (its publisher thread ends with the process; the reconciler covers the rest).
_streams = streams.from_settings(_settings)
if _streams is not None:
    _streams.start()
    streams.install(_streams)
