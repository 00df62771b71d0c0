"""Rate limits: a token bucket per key (a client, an address), in memory or in Redis.

Each bucket holds at most ``burst`` tokens and gains ``per_second`` tokens a second; a request
takes one, and is refused while none is left, with the time until one is back (Retry-After).
The rates are data (profiles/security/rules.json ``rateLimits``): per role (member, archive,
office), per client where one needs more, and for the token endpoint and login failures.

In memory by default (each process its own buckets).  With ``HUB_REDIS_URL`` every API
process shares the buckets: one Lua script refills and takes atomically on Redis's own clock,
so processes on several hosts neither race nor disagree about the time.  If Redis does not
answer, the process falls back to its own buckets and says so in the log: a Redis restart
slows nobody down and lets nobody through unlimited.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("hub.ratelimit")


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: int

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Rate:
        rate = cls(float(data["perSecond"]), int(data["burst"]))
        if rate.per_second <= 0 or rate.burst < 1:
            raise ValueError(f"a rate needs perSecond > 0 and burst >= 1, not {data}")
        return rate


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0  # seconds until a token is back; 0 when allowed

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


@dataclass(frozen=True)
class RateLimits:
    """The community's rates (profiles/security/rules.json ``rateLimits``)."""

    member: Rate
    archive: Rate
    office: Rate
    anonymous: Rate  # open paths, per address
    token_address: Rate  # the token endpoint, per address
    token_client: Rate  # the token endpoint, per client id asked for
    login_failures: Rate  # refused credentials, per address and per client id
    clients: dict[str, Rate] = field(default_factory=dict)

    def for_client(self, client_id: str, roles: frozenset[str]) -> Rate:
        if client_id in self.clients:
            return self.clients[client_id]
        if roles & {"admin", "office"}:
            return self.office
        if "archive" in roles:
            return self.archive
        return self.member


def parse_limits(data: dict[str, Any]) -> RateLimits:
    return RateLimits(
        member=Rate.parse(data["member"]),
        archive=Rate.parse(data["archive"]),
        office=Rate.parse(data["office"]),
        anonymous=Rate.parse(data["anonymous"]),
        token_address=Rate.parse(data["tokenPerAddress"]),
        token_client=Rate.parse(data["tokenPerClient"]),
        login_failures=Rate.parse(data["loginFailures"]),
        clients={k: Rate.parse(v) for k, v in (data.get("clients") or {}).items()},
    )


@cache
def community_limits(path: Path | None = None) -> RateLimits:
    from adapters.feeds.config import profiles_dir

    source = path or profiles_dir() / "security" / "rules.json"
    return parse_limits(json.loads(source.read_text(encoding="utf-8"))["rateLimits"])


# --- the bucket ------------------------------------------------------------------------------


def take(tokens: float, rate: Rate, cost: float) -> tuple[Decision, float]:
    """Take ``cost`` tokens from a refilled bucket; cost 0 only asks whether one is left."""
    need = max(cost, 1.0)
    if tokens >= need:
        return Decision(True), tokens - cost
    return Decision(False, (need - tokens) / rate.per_second), tokens


class Limiter(Protocol):
    def hit(self, key: str, rate: Rate, cost: float = 1.0) -> Decision: ...

    async def ahit(self, key: str, rate: Rate, cost: float = 1.0) -> Decision: ...


class MemoryLimiter:
    """Buckets in this process.  Full buckets are forgotten (a full bucket and no bucket are
    the same), so many callers seen once do not grow memory."""

    _SWEEP_EVERY = 10_000

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float, Rate]] = {}  # key → (tokens, at, rate)
        self._lock = threading.Lock()
        self._hits = 0

    def hit(self, key: str, rate: Rate, cost: float = 1.0) -> Decision:
        now = self.clock()
        with self._lock:
            tokens, at, _ = self._buckets.get(key, (float(rate.burst), now, rate))
            tokens = min(float(rate.burst), tokens + (now - at) * rate.per_second)
            decision, left = take(tokens, rate, cost)
            self._buckets[key] = (left, now, rate)
            self._hits += 1
            if self._hits % self._SWEEP_EVERY == 0:
                self._sweep(now)
        return decision

    async def ahit(self, key: str, rate: Rate, cost: float = 1.0) -> Decision:
        return self.hit(key, rate, cost)

    def _sweep(self, now: float) -> None:
        full = [
            k
            for k, (tokens, at, rate) in self._buckets.items()
            if tokens + (now - at) * rate.per_second >= rate.burst
        ]
        for key in full:
            del self._buckets[key]


# KEYS[1]: the bucket; ARGV: per second, burst, cost.  Times on Redis's clock (TIME), so every
# process agrees; the key expires once it would be full again (no state for idle callers).
# Numbers go back as strings: Redis truncates Lua numbers to integers.
_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(held[1])
local at = tonumber(held[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local need = math.max(cost, 1)
local allowed = 0
local wait = 0
if tokens >= need then
  tokens = tokens - cost
  allowed = 1
else
  wait = (need - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(wait)}
"""


class RedisLimiter:
    """Buckets shared through Redis; this process's own buckets while Redis is away."""

    def __init__(self, url: str, *, prefix: str = "hub:rl:", timeout: float = 0.5) -> None:
        import redis

        self.url, self.prefix, self.timeout = url, prefix, timeout
        self.fallback = MemoryLimiter()
        self._sync = redis.Redis.from_url(url, socket_timeout=timeout,
                                          socket_connect_timeout=timeout)  # fmt: skip
        self._sync_script = self._sync.register_script(_SCRIPT)
        # One asyncio client per event loop: a connection belongs to the loop that made it
        # (the server has one loop; test clients start several).
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        self._warned_at = 0.0

    def _async_script(self) -> Any:
        import redis.asyncio

        loop = asyncio.get_running_loop()
        script = self._async.get(loop)
        if script is None:
            client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
            script = self._async[loop] = client.register_script(_SCRIPT)
        return script

    @staticmethod
    def _decision(answer: Any) -> Decision:
        allowed, wait = answer
        return Decision(bool(int(allowed)), float(wait))

    def _args(self, rate: Rate, cost: float) -> list[str]:
        return [repr(rate.per_second), str(rate.burst), repr(float(cost))]

    def _unavailable(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:  # once a minute, not once a request
            self._warned_at = now
            log.warning("Redis unavailable for rate limits (%s); limiting per process",
                        type(exc).__name__)  # fmt: skip

    def hit(self, key: str, rate: Rate, cost: float = 1.0) -> Decision:
        import redis

        try:
            answer = self._sync_script(keys=[self.prefix + key], args=self._args(rate, cost))
        except redis.RedisError as exc:
            self._unavailable(exc)
            return self.fallback.hit(key, rate, cost)
        return self._decision(answer)

    async def ahit(self, key: str, rate: Rate, cost: float = 1.0) -> Decision:
        import redis

        try:
            script = self._async_script()
            answer = await script(keys=[self.prefix + key], args=self._args(rate, cost))
        except redis.RedisError as exc:
            self._unavailable(exc)
            return self.fallback.hit(key, rate, cost)
        return self._decision(answer)


def make_limiter(redis_url: str | None) -> Limiter:
    return RedisLimiter(redis_url) if redis_url else MemoryLimiter()


class Blocks:
    """Callers refused for a while after too many login failures, kept in this process.

    Checked before a token is even verified, so a flood of bad credentials costs a dict
    lookup, not a signature check and an audit write each.  Filled when the (shared) failure
    bucket refuses: every process learns of a flood from its own next failure."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def block(self, key: str, seconds: float) -> None:
        with self._lock:
            self._until[key] = self.clock() + seconds
            if len(self._until) > 10_000:
                now = self.clock()
                self._until = {k: u for k, u in self._until.items() if u > now}

    def blocked(self, key: str) -> float:
        """Seconds the key is still refused (0: not blocked)."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            with self._lock:
                self._until.pop(key, None)
            return 0.0
        return left
