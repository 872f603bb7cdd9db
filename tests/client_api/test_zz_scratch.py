from tests.helpers import q


async def test_smoke(hs):
    alice = await hs.register("alice")
    room = await alice.create_room(name="x")
    await alice.send(room, "hi")
    s = await alice.sync()
    print(s)
    r = await hs.raw("GET", f"/rooms/{q(room)}/state/m.room.name/", token=alice.token)
    print(r)
    r = await hs.raw("GET", "/directory/room/" + q("#a:hs.test"), token=alice.token)
    print(r.status, r.text)
