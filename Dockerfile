# The hub's one image: every process (hub api | mllp | worker | scheduler | migrate) runs from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HUB_PROFILES=/app/profiles \
    HUB_LOG_FORMAT=json

WORKDIR /app
# Dependencies first, so a change to the code does not reinstall them.
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY adapters ./adapters
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/hub --create-home hub
# profiles/ is data (the community, code maps, catalogue): read at start, never written.
COPY profiles ./profiles

# Never root: the hub needs no privilege (ports above 1024, state in the store).
USER hub
EXPOSE 8080 2575 9100
STOPSIGNAL SIGTERM
# Liveness of the default command (hub api); compose overrides it per service.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
CMD ["hub", "api", "--host", "0.0.0.0", "--port", "8080"]
