"""TLS for MLLP: the listener's server context, optionally requiring client certificates."""

from __future__ import annotations

import ssl


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """TLS 1.2 or newer; with ``client_ca`` every sender must present a certificate it
    signed (mutual TLS), so a stolen source address alone is not enough."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
