"""The hub's side of the feeds: the MLLP listener and HTTP intake wired to the inbox and worker."""
