// A matrix-js-sdk session (the library inside Element Web) against one homeserver.
//
// Usage: node tests/js/session.mjs <base_url>
//
// Two users start clients and go through what a chat client does; every step is run and
// reported, in order, as one JSON object on stdout:
//   {"steps": [{"name": "...", "ok": true} | {"name": "...", "ok": false, "error": "..."}]}
// The exit status is non-zero when any step failed. A step whose precondition failed
// (a client that never started) fails too, saying so. No end-to-end encryption: the
// clients are started without initRustCrypto, which this session does not exercise.

// stdout carries only the result: the SDK's log lines go to stderr (redirected before it is
// imported, since its logger binds the console methods when it loads).
for (const level of ["log", "info", "warn", "debug", "trace"]) console[level] = console.error;
// matrix-js-sdk 43 declares Node >= 22; on Node 20 (this machine's) the one thing it misses
// is the ES2024 Promise.withResolvers, supplied here with the standard semantics.
Promise.withResolvers ??= function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => { resolve = res; reject = rej; });
    return { promise, resolve, reject };
};
const sdk = await import("matrix-js-sdk");

const baseUrl = process.argv[2];
if (!baseUrl) {
    console.error("usage: node session.mjs <base_url>");
    process.exit(2);
}

// Waiting for something the server must deliver: a bound on how long a missing delivery
// holds the run, not a timing assertion (a slow answer that arrives still passes).
const WAIT_MS = 20_000;
const PASSWORD = "js-sdk session password 1";
const suffix = Date.now().toString(36) + Math.floor(Math.random() * 1e6).toString(36);

const steps = [];
const state = {};

async function step(name, fn) {
    try {
        await fn();
        steps.push({ name, ok: true });
    } catch (err) {
        console.error(`step "${name}" failed:`, err);  // the stack, for whoever reads stderr
        steps.push({ name, ok: false, error: String(err?.message ?? err).slice(0, 500) });
    }
}

function need(...keys) {
    for (const key of keys) {
        if (state[key] === undefined) throw new Error(`not reached: ${key} missing from an earlier step`);
    }
}

function assert(cond, message) {
    if (!cond) throw new Error(message);
}

/** Resolves when check() is true, re-checked whenever `emitter` emits `event`. */
function waitFor(emitter, event, check, what) {
    return new Promise((resolve, reject) => {
        const done = (value) => {
            clearTimeout(timer);
            emitter.removeListener(event, listener);
            resolve(value);
        };
        const listener = (...args) => {
            try {
                const value = check(...args);
                if (value) done(value);
            } catch (err) {
                clearTimeout(timer);
                emitter.removeListener(event, listener);
                reject(err);
            }
        };
        const timer = setTimeout(() => {
            emitter.removeListener(event, listener);
            reject(new Error(`no ${what} within ${WAIT_MS} ms`));
        }, WAIT_MS);
        emitter.on(event, listener);
        const now = check();
        if (now) done(now);
    });
}

async function register(localpart) {
    const anon = sdk.createClient({ baseUrl });
    const got = await anon.registerRequest({
        username: localpart, password: PASSWORD, auth: { type: "m.login.dummy" },
        initial_device_display_name: "js-sdk session",
    });
    return sdk.createClient({
        baseUrl, accessToken: got.access_token, userId: got.user_id, deviceId: got.device_id,
    });
}

async function start(client) {
    const ready = waitFor(
        client, sdk.ClientEvent.Sync,
        (syncState, _prev, data) => {
            if (syncState === "ERROR") throw new Error(`sync ERROR: ${data?.error ?? "unknown"}`);
            return syncState === "PREPARED" || syncState === "SYNCING";
        },
        "PREPARED sync state",
    );
    await client.startClient({ initialSyncLimit: 20 });
    await ready;
}

function timelineEvent(client, roomId, check, what) {
    const seen = () => client.getRoom(roomId)?.getLiveTimeline().getEvents().find(check);
    return waitFor(client, sdk.RoomEvent.Timeline, seen, what);
}

await step("register two users", async () => {
    state.alice = await register(`alice-${suffix}`);
    state.bob = await register(`bob-${suffix}`);
});

await step("both clients start (initial sync to PREPARED/SYNCING)", async () => {
    need("alice", "bob");
    await start(state.alice);
    await start(state.bob);
    state.started = true;
});

await step("create a room with a name and a topic", async () => {
    need("started");
    const { room_id } = await state.alice.createRoom({ name: "Tricolor js-sdk", topic: "A session", preset: "private_chat" });
    state.roomId = room_id;
    const room = await waitFor(state.alice, sdk.ClientEvent.Room, () => state.alice.getRoom(room_id), "room in alice's client");
    // The name is recalculated once a sync's state is applied: re-checked after each sync.
    await waitFor(state.alice, sdk.ClientEvent.Sync, () => room.name === "Tricolor js-sdk", "room name");
    assert(room.currentState.getStateEvents("m.room.topic", "")?.getContent().topic === "A session", "topic not set");
});

await step("invite", async () => {
    need("roomId");
    await state.alice.invite(state.roomId, state.bob.getUserId());
    await waitFor(
        state.bob, sdk.ClientEvent.Room,
        () => state.bob.getRoom(state.roomId)?.getMyMembership() === "invite", "invite at bob",
    );
});

await step("join", async () => {
    need("roomId");
    await state.bob.joinRoom(state.roomId);
    const room = state.alice.getRoom(state.roomId);
    await waitFor(
        state.alice, sdk.RoomMemberEvent.Membership,
        () => room.getMember(state.bob.getUserId())?.membership === "join", "bob's join at alice",
    );
    state.joined = true;
});

await step("message", async () => {
    need("joined");
    const { event_id } = await state.alice.sendTextMessage(state.roomId, "hello from js-sdk");
    state.messageId = event_id;
    await timelineEvent(state.bob, state.roomId, (e) => e.getId() === event_id && e.getContent().body === "hello from js-sdk", "message at bob");
});

await step("read receipt", async () => {
    need("messageId");
    const event = state.bob.getRoom(state.roomId).findEventById(state.messageId);
    await state.bob.sendReadReceipt(event);
    const room = state.alice.getRoom(state.roomId);
    await waitFor(
        room, sdk.RoomEvent.Receipt,
        () => room.getReceiptsForEvent(room.findEventById(state.messageId))
            .some((r) => r.userId === state.bob.getUserId() && r.type === "m.read"),
        "bob's receipt at alice",
    );
});

await step("typing", async () => {
    need("joined");
    await state.alice.sendTyping(state.roomId, true, 30_000);
    const room = state.bob.getRoom(state.roomId);
    await waitFor(
        state.bob, sdk.RoomMemberEvent.Typing,
        () => room.getMember(state.alice.getUserId())?.typing === true, "alice typing at bob",
    );
    await state.alice.sendTyping(state.roomId, false, 0);
});

await step("display name", async () => {
    need("joined");
    await state.alice.setDisplayName("Alice Liddell");
    const room = state.bob.getRoom(state.roomId);
    await waitFor(
        state.bob, sdk.RoomMemberEvent.Name,
        () => room.getMember(state.alice.getUserId())?.name === "Alice Liddell", "alice's new name at bob",
    );
});

await step("media upload and download", async () => {
    need("started");
    const bytes = new TextEncoder().encode("a file from the js-sdk session\n");
    const { content_uri } = await state.alice.uploadContent(new Blob([bytes], { type: "text/plain" }), {
        name: "hello.txt", type: "text/plain",
    });
    assert(content_uri.startsWith("mxc://"), `not an mxc URI: ${content_uri}`);
    // The spec's current download path is authenticated (/_matrix/client/v1/media/download).
    const url = state.bob.mxcUrlToHttp(content_uri, undefined, undefined, undefined, false, true, true);
    const resp = await fetch(url, { headers: { Authorization: `Bearer ${state.bob.getAccessToken()}` } });
    assert(resp.ok, `download answered ${resp.status}`);
    const got = new Uint8Array(await resp.arrayBuffer());
    assert(Buffer.from(got).equals(Buffer.from(bytes)), "downloaded bytes differ from the upload");
});

await step("redaction", async () => {
    need("joined");
    const { event_id } = await state.alice.sendTextMessage(state.roomId, "a mistake");
    await timelineEvent(state.bob, state.roomId, (e) => e.getId() === event_id, "message to redact at bob");
    await state.alice.redactEvent(state.roomId, event_id);
    const event = state.bob.getRoom(state.roomId).findEventById(event_id);
    await waitFor(state.bob, sdk.RoomEvent.Redaction, () => event.isRedacted(), "redaction at bob");
    assert(event.getContent().body === undefined, "redacted content still has a body");
});

await step("scrollback to the room's creation", async () => {
    need("joined");
    const room = state.bob.getRoom(state.roomId);
    const created = () => room.getLiveTimeline().getEvents().some((e) => e.getType() === "m.room.create");
    for (let i = 0; i < 50 && !created(); i++) {
        const before = room.getLiveTimeline().getEvents().length;
        await state.bob.scrollback(room, 10);
        if (room.getLiveTimeline().getEvents().length === before && room.oldState.paginationToken === null) break;
    }
    assert(created(), "m.room.create never reached by scrollback");
});

await step("an edit (m.replace) seen as replaced", async () => {
    need("joined");
    const { event_id } = await state.alice.sendTextMessage(state.roomId, "teh original");
    await timelineEvent(state.bob, state.roomId, (e) => e.getId() === event_id, "message to edit at bob");
    await state.alice.sendEvent(state.roomId, "m.room.message", {
        msgtype: "m.text", body: "* the original",
        "m.new_content": { msgtype: "m.text", body: "the original" },
        "m.relates_to": { rel_type: "m.replace", event_id },
    });
    const original = state.bob.getRoom(state.roomId).findEventById(event_id);
    await waitFor(
        original, sdk.MatrixEventEvent.Replaced,
        () => original.replacingEvent() !== null && original.getContent().body === "the original",
        "the edit applied at bob",
    );
});

await step("leave", async () => {
    need("joined");
    await state.bob.leave(state.roomId);
    const room = state.alice.getRoom(state.roomId);
    await waitFor(
        state.alice, sdk.RoomMemberEvent.Membership,
        () => room.getMember(state.bob.getUserId())?.membership === "leave", "bob's leave at alice",
    );
});

await step("logout, and the old token is refused", async () => {
    need("alice");
    const token = state.alice.getAccessToken();
    await state.alice.logout(true);
    const resp = await fetch(`${baseUrl}/_matrix/client/v3/account/whoami`, {
        headers: { Authorization: `Bearer ${token}` },
    });
    const body = await resp.json();
    assert(resp.status === 401 && body.errcode === "M_UNKNOWN_TOKEN", `old token answered ${resp.status} ${JSON.stringify(body)}`);
});

for (const client of [state.alice, state.bob]) client?.stopClient();
process.stdout.write(JSON.stringify({ steps }) + "\n");
process.exit(steps.every((s) => s.ok) ? 0 : 1);
