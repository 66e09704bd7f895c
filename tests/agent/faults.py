"""A fault-injecting aiohttp middleware for the real receiver, as testbed/moto_server.py is for
moto: the receiver's own code answers every request the rules leave alone.

A rule matches the next `times` requests to a path (None: until removed) and either answers
in the receiver's place (a status, with Retry-After and the receiver's error body), delays the
request, drops the connection before or after the receiver handled it, or holds the
receiver's answer until the test lets it go. Every request is logged with what it was
answered, so a test can wait on "three 503s seen" instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web
from azfed import wire

from tests.waiting import until

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# the receiver's error names for the statuses a test may inject in its place
_ERRORS = {
    409: "in_flight",
    422: "key_conflict",
    429: "busy",
    500: "internal",
    502: "bad_gateway",
    503: "unavailable",
}


@dataclass
class Rule:
    path: str
    times: int | None = 1
    status: int | None = None
    retry_after: str | None = None
    delay_s: float = 0.0
    drop: Literal["before", "after"] | None = None
    hold: asyncio.Event | None = None  # the receiver answers, then the answer waits on this
    reached: asyncio.Event = field(default_factory=asyncio.Event)  # set once a request matched


@dataclass(frozen=True)
class Seen:
    """One request: its Idempotency-Key, when it arrived (loop time), what it was answered
    (None: the connection was dropped) and whether a rule answered instead of the receiver."""

    path: str
    key: str
    at: float
    status: int | None
    injected: bool


class Faults:
    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self.changed = asyncio.Event()  # set each time a request is logged

    # --- rules -----------------------------------------------------------------------------

    def answer(
        self, status: int, *, path: str = wire.REPORTS_PATH, times: int | None = 1,
        retry_after: str | None = None,
    ) -> Rule:  # fmt: skip
        """Answer `status` in the receiver's place (a 503 with times=None: the receiver down)."""
        return self._add(Rule(path, times, status=status, retry_after=retry_after))

    def delay(self, seconds: float, *, path: str = wire.REPORTS_PATH, times: int = 1) -> Rule:
        """Hold the request `seconds` before the receiver sees it (a slow network)."""
        return self._add(Rule(path, times, delay_s=seconds))

    def drop(
        self, when: Literal["before", "after"], *, path: str = wire.REPORTS_PATH, times: int = 1
    ) -> Rule:
        """Close the connection without an answer, before the receiver sees the request or
        after it handled it (the answer is lost on the way back)."""
        return self._add(Rule(path, times, drop=when))

    def hold(self, *, path: str = wire.REPORTS_PATH, times: int = 1) -> Rule:
        """Let the receiver handle the request, then keep its answer until `rule.hold` is set."""
        return self._add(Rule(path, times, hold=asyncio.Event()))

    def remove(self, rule: Rule) -> None:
        self.rules.remove(rule)

    def _add(self, rule: Rule) -> Rule:
        self.rules.append(rule)
        return rule

    def _take(self, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.path == path and (rule.times is None or rule.times > 0):
                if rule.times is not None:
                    rule.times -= 1
                rule.reached.set()
                return rule
        return None

    # --- what was seen ---------------------------------------------------------------------

    def statuses(self, path: str = wire.REPORTS_PATH) -> list[int | None]:
        return [s.status for s in self.seen if s.path == path]

    def keys(self, path: str = wire.REPORTS_PATH) -> list[str]:
        return [s.key for s in self.seen if s.path == path]

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
        """Wait until `condition()` holds, re-checking at each logged request."""
        await until(condition, what, timeout=timeout, wake=self.changed)

    def _log(self, request: web.Request, at: float, status: int | None, injected: bool) -> None:
        key = request.headers.get(wire.HEADER_KEY, "")
        self.seen.append(Seen(request.path, key, at, status, injected))
        self.changed.set()

    # --- the middleware --------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        at = asyncio.get_running_loop().time()
        rule = self._take(request.path)
        if rule is None:
            return await self._pass(request, handler, at)
        if rule.delay_s:
            await asyncio.sleep(rule.delay_s)  # the fault itself: a slow network
        if rule.drop == "before":
            return self._dropped(request, at)
        if rule.status is not None:
            self._log(request, at, rule.status, injected=True)
            return _injected(rule)
        resp = await self._pass(request, handler, at, log=rule.drop is None)
        if rule.drop == "after":
            return self._dropped(request, at)
        if rule.hold is not None:
            await rule.hold.wait()
        return resp

    async def _pass(
        self, request: web.Request, handler: Handler, at: float, *, log: bool = True
    ) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            self._log(request, at, exc.status, injected=False)
            raise
        if log:
            self._log(request, at, resp.status, injected=False)
        return resp

    def _dropped(self, request: web.Request, at: float) -> web.StreamResponse:
        if request.transport is not None:
            request.transport.close()
        self._log(request, at, None, injected=True)
        # aiohttp's write of this answer meets the closed transport and gives up quietly
        return web.Response(status=204)


def _injected(rule: Rule) -> web.Response:
    assert rule.status is not None
    error = _ERRORS.get(rule.status, "injected")
    body = {"error": error, "message": "answered by the test's fault layer", "problems": []}
    headers = {"Retry-After": rule.retry_after} if rule.retry_after is not None else None
    return web.json_response(body, status=rule.status, headers=headers)
