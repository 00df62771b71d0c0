"""The community the running hub serves, for services that run inside any unit of work."""

from __future__ import annotations

from adapters.feeds.config import Community, demo_community

_community: Community | None = None


def set_community(community: Community) -> None:
    global _community
    _community = community


def community() -> Community:
    global _community
    if _community is None:
        _community = demo_community()
    return _community
