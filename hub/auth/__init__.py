"""HTTP side of security: the token endpoint, SMART discovery, and request enforcement."""
