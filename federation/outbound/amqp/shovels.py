"""One dynamic shovel per destination, made, checked and repaired through the management API.

AMQP 0-9-1 cannot create a shovel; the management plugin's HTTP API can
(``PUT /api/parameters/shovel/{vhost}/{name}``, state in ``GET /api/shovels/{vhost}``).
Settings and why (RabbitMQ "Dynamic Shovels"):

- ``src-queue`` (our durable ``tricolor.fed.out.<destination>``), never ``src-exchange``:
  a queue keeps what arrives while the shovel is down.
- ``ack-mode: on-confirm``: a message leaves our queue only after the peer's broker
  confirmed it, so a broker crash on either side loses nothing (it may duplicate; the
  receiver deduplicates).
- ``src-prefetch-count``: a backlog after an outage drains in bounded steps.
- ``dest-add-forward-headers``: the ``x-shovelled`` provenance header.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from typing import Any

import aiohttp
import attrs
from yarl import URL

from homeserver.core.federation_envelope import out_queue, shovel_name

log = logging.getLogger(__name__)

CHECK_INTERVAL = 15.0  # seconds between checks of one shovel (and the supervisor's period)
REQUEST_TIMEOUT = 10.0
DEPTH_TIMEOUT = 2.0  # a /metrics scrape waits at most this for the broker's queue depths


@attrs.frozen
class ShovelSpec:
    destination: str
    dest_uri: str
    exchange: str

    def value(self, prefetch: int) -> dict[str, Any]:
        return {
            "src-protocol": "amqp091",
            "src-uri": "amqp://",
            "src-queue": out_queue(self.destination),
            "dest-protocol": "amqp091",
            "dest-uri": self.dest_uri,
            "dest-exchange": self.exchange,
            "dest-exchange-key": self.destination,
            "ack-mode": "on-confirm",
            "src-prefetch-count": prefetch,
            "dest-add-forward-headers": True,
            "reconnect-delay": 1,
        }


class ShovelManager:
    def __init__(self, management_url: str, *, vhost: str = "/", prefetch: int = 50) -> None:
        url = URL(management_url)
        self._base = url.with_user(None).with_password(None).with_path("/api")
        self._auth = aiohttp.BasicAuth(url.user or "guest", url.password or "guest")
        self._vhost = urllib.parse.quote(vhost, safe="")
        self._prefetch = prefetch
        self._session: aiohttp.ClientSession | None = None
        self._specs: dict[str, ShovelSpec] = {}
        self._checked: dict[str, float] = {}
        self._states: dict[str, str] = {}
        self._depths: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            auth=self._auth,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            trust_env=False,
        )
        self._task = asyncio.create_task(self._supervise(), name="amqp-shovel-supervisor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def depths(self) -> dict[str, int]:
        """destination -> messages waiting in its out queue, as last read by ``refresh_depths``."""
        return dict(self._depths)

    async def refresh_depths(self) -> None:
        """Read every out queue's depth in one management API call (on a /metrics scrape).
        A broker that does not answer keeps the last figures; the scrape is not held up."""
        prefix = out_queue("")
        try:
            body = await asyncio.wait_for(
                self._request("GET", f"queues/{self._vhost}?columns=name,messages"), DEPTH_TIMEOUT,
            )
        except Exception as e:
            log.debug("cannot read queue depths: %s: %s", type(e).__name__, e)
            return
        depths = {}
        for entry in body if isinstance(body, list) else []:
            name = entry.get("name", "") if isinstance(entry, dict) else ""
            if name.startswith(prefix):
                depths[name[len(prefix):]] = int(entry.get("messages") or 0)
        self._depths = depths

    def states(self) -> dict[str, str]:
        """destination -> last seen shovel state (running, starting, terminated, missing...)."""
        return dict(self._states)

    async def ensure(self, spec: ShovelSpec) -> None:
        """Make sure the destination's shovel exists with these settings; cheap when it was
        checked in the last CHECK_INTERVAL seconds. Raises on management API failure."""
        if self._specs.get(spec.destination) == spec and (
            time.monotonic() - self._checked.get(spec.destination, -1e9) < CHECK_INTERVAL
        ):
            return
        self._specs[spec.destination] = spec
        await self.check(spec.destination)

    async def check(self, destination: str) -> str:
        """Check one shovel and repair it (create, or re-create when terminated or changed)."""
        spec = self._specs[destination]
        async with self._lock:
            value = spec.value(self._prefetch)
            current = await self._get_parameter(destination)
            state = await self._state(destination) if current is not None else "missing"
            changed = not isinstance(current, dict) or any(
                current.get(k) != v for k, v in value.items()
            )
            if changed or state == "terminated":
                if current is not None:
                    await self._request(
                        "DELETE", f"parameters/shovel/{self._vhost}/{self._name(destination)}"
                    )
                await self._request(
                    "PUT",
                    f"parameters/shovel/{self._vhost}/{self._name(destination)}",
                    {"value": value},
                )
                log.info(
                    "shovel to %s %s (was %s)",
                    destination,
                    "created" if current is None else "repaired",
                    state,
                )
                state = await self._state(destination)
            self._checked[destination] = time.monotonic()
            if self._states.get(destination) != state:
                log.info("shovel to %s: %s", destination, state)
            self._states[destination] = state
            return state

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            for destination in list(self._specs):
                try:
                    await self.check(destination)
                except Exception as e:
                    self._states[destination] = "unknown"
                    log.info(
                        "cannot check the shovel to %s: %s: %s", destination, type(e).__name__, e
                    )

    def _name(self, destination: str) -> str:
        return urllib.parse.quote(shovel_name(destination), safe="")

    async def _get_parameter(self, destination: str) -> Any:
        body = await self._request(
            "GET", f"parameters/shovel/{self._vhost}/{self._name(destination)}", allow_404=True
        )
        return body.get("value") if isinstance(body, dict) else None

    async def _state(self, destination: str) -> str:
        body = await self._request("GET", f"shovels/{self._vhost}")
        for entry in body if isinstance(body, list) else []:
            if isinstance(entry, dict) and entry.get("name") == shovel_name(destination):
                return str(entry.get("state", "unknown"))
        return "starting"

    async def _request(
        self, method: str, path: str, body: Any = None, *, allow_404: bool = False
    ) -> Any:
        assert self._session is not None, "start() first"
        url = URL(f"{self._base}/{path}", encoded=True)  # keep %2F (the default vhost) as is
        async with self._session.request(method, url, json=body) as response:
            if allow_404 and response.status == 404:
                return None
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {await response.text()}")
            if response.status == 204 or response.content_length == 0:
                return None
            return await response.json(content_type=None)
