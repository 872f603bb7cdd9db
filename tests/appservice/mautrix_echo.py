"""An application service written with mautrix (the framework Python bridges use), run as
its own process by tests/appservice/test_mautrix.py: its bot joins rooms it is invited to,
and every message from a non-bridged user is echoed by the puppet @_mx_echo (registered on
first use with m.login.application_service and acting through `user_id` masquerading).

    python -m tests.appservice.mautrix_echo --port P --hs-url URL --as-token T --hs-token T
"""

from __future__ import annotations

import argparse
import asyncio

from mautrix.appservice import AppService
from mautrix.types import Event, EventType, Membership, UserID


async def run(args: argparse.Namespace) -> None:
    appserv = AppService(
        server=args.hs_url, domain="hs.test", as_token=args.as_token, hs_token=args.hs_token,
        bot_localpart="_mx_bot", id="mx",
    )
    puppet = UserID("@_mx_echo:hs.test")

    @appserv.matrix_event_handler
    async def on_event(evt: Event) -> None:
        if evt.type == EventType.ROOM_MEMBER and evt.state_key == appserv.bot_mxid:
            if evt.content.membership == Membership.INVITE:
                await appserv.intent.join_room(evt.room_id)
        elif evt.type == EventType.ROOM_MESSAGE and not evt.sender.startswith("@_mx_"):
            intent = appserv.intent.user(puppet)
            await intent.ensure_joined(evt.room_id)
            await intent.send_text(evt.room_id, f"echo: {evt.content.body}")

    await appserv.start("127.0.0.1", args.port)
    print("listening", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await appserv.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--hs-url", required=True)
    p.add_argument("--as-token", required=True)
    p.add_argument("--hs-token", required=True)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
