// What the client knows, built only from sync responses and /messages pages: rooms with
// their state, timeline, receipts, typing and unread counts; users' presence.

export const ROLE_EVENT = 'tricolor.member_role';
export const ANNOUNCEMENT_EVENT = 'tricolor.announcement';

export class Room {
  constructor(id) {
    this.id = id;
    this.membership = 'join';
    this.state = new Map(); // type -> Map(state_key -> event)
    this.timeline = []; // events in order, local echoes last
    this.ids = new Set();
    this.prevBatch = null; // where /messages continues backwards; null: the start was reached
    this.notifications = 0;
    this.highlights = 0;
    this.receipts = new Map(); // user id -> event id (m.read)
    this.typing = [];
    this.edits = new Map(); // event id -> latest m.replace event
    this.redacted = new Map(); // event id -> the redaction's sender
    this.lastTs = 0;
    this.inviter = null;
  }

  stateEvent(type, key = '') {
    return this.state.get(type)?.get(key) || null;
  }

  setState(ev) {
    if (!this.state.has(ev.type)) this.state.set(ev.type, new Map());
    this.state.get(ev.type).set(ev.state_key, ev);
  }

  members(membership = 'join') {
    const out = [];
    for (const [key, ev] of this.state.get('m.room.member') || []) {
      if (ev.content?.membership === membership) out.push(key);
    }
    return out;
  }

  displayName(userId) {
    const name = this.stateEvent('m.room.member', userId)?.content?.displayname;
    return typeof name === 'string' && name ? name : userId;
  }

  /** The room's name; a direct chat is named after the other person. */
  name(me) {
    const n = this.stateEvent('m.room.name')?.content?.name;
    if (typeof n === 'string' && n) return n;
    const others = [...this.members('join'), ...this.members('invite')].filter((u) => u !== me);
    if (others.length) return others.map((u) => this.displayName(u)).join(', ');
    if (this.inviter) return this.displayName(this.inviter);
    return 'Empty chat';
  }

  isDirect(me, directIds) {
    if (directIds.has(this.id)) return true;
    const others = [...this.members('join'), ...this.members('invite')].filter((u) => u !== me);
    return !this.stateEvent('m.room.name') && others.length === 1;
  }

  /** The other person of a direct chat. */
  partner(me) {
    const others = [...this.members('join'), ...this.members('invite'), ...this.members('leave')].filter((u) => u !== me);
    return others[0] || null;
  }

  /** tricolor.member_role: PATIENT, DOCTOR, AI_ASSISTANT (set by the room's admins). */
  aiRole(userId) {
    const role = this.stateEvent(ROLE_EVENT, `user:${userId}`)?.content?.role;
    if (typeof role === 'string') return role;
    const create = this.stateEvent('m.room.create');
    if (create && create.sender === userId) return 'DOCTOR';
    return null;
  }

  powerLevel(userId) {
    const pl = this.stateEvent('m.room.power_levels')?.content || {};
    const create = this.stateEvent('m.room.create');
    const v12creator = create && ['12'].includes(String(create.content?.room_version)) && create.sender === userId;
    if (v12creator || (create?.content?.additional_creators || []).includes(userId)) return Infinity;
    const users = pl.users || {};
    if (userId in users) return users[userId];
    return pl.users_default || 0;
  }

  canRedactOthers(userId) {
    const pl = this.stateEvent('m.room.power_levels')?.content || {};
    return this.powerLevel(userId) >= (pl.redact ?? 50);
  }

  announcement() {
    const text = this.stateEvent(ANNOUNCEMENT_EVENT)?.content?.text;
    return typeof text === 'string' && text ? text : null;
  }

  /** Adds timeline events (live at the end, or a /messages page at the start). */
  addEvents(events, { atStart = false } = {}) {
    const fresh = [];
    for (const ev of events) {
      if (!ev.event_id || this.ids.has(ev.event_id)) continue;
      this.ids.add(ev.event_id);
      this.noteRelations(ev);
      fresh.push(ev);
    }
    if (atStart) {
      this.timeline = [...fresh, ...this.timeline];
    } else {
      for (const ev of fresh) {
        // The server's copy of our own message replaces its local echo.
        const txn = ev.unsigned?.transaction_id;
        const echo = txn ? this.timeline.findIndex((e) => e.pending && e.txnId === txn) : -1;
        if (echo >= 0) this.timeline.splice(echo, 1);
        const firstPending = this.timeline.findIndex((e) => e.pending);
        if (firstPending >= 0) this.timeline.splice(firstPending, 0, ev);
        else this.timeline.push(ev);
        if (ev.origin_server_ts > this.lastTs) this.lastTs = ev.origin_server_ts;
      }
    }
  }

  noteRelations(ev) {
    if (ev.type === 'm.room.redaction') {
      const target = ev.redacts || ev.content?.redacts;
      if (target) this.redacted.set(target, ev.sender);
    }
    if (ev.unsigned?.redacted_because) this.redacted.set(ev.event_id, ev.unsigned.redacted_because.sender);
    const rel = ev.content?.['m.relates_to'];
    if (rel?.rel_type === 'm.replace' && rel.event_id && ev.content['m.new_content']) {
      const prev = this.edits.get(rel.event_id);
      if (!prev || prev.origin_server_ts <= ev.origin_server_ts) this.edits.set(rel.event_id, ev);
    }
  }

  /** A message the user just sent, shown until the server's copy arrives. */
  addEcho(txnId, type, content, sender) {
    const ev = {
      event_id: `~${txnId}`, txnId, pending: true, type, content, sender, origin_server_ts: Date.now(),
    };
    this.timeline.push(ev);
    return ev;
  }

  event(eventId) {
    return this.timeline.find((e) => e.event_id === eventId) || null;
  }

  /** Content as shown: the latest edit's m.new_content for an edited message. */
  shownContent(ev) {
    const edit = this.edits.get(ev.event_id);
    return edit && edit.sender === ev.sender ? edit.content['m.new_content'] : ev.content;
  }

  /** How many others have read this event or a later one ("read by 3"). */
  readBy(eventId, me) {
    const index = this.timeline.findIndex((e) => e.event_id === eventId);
    if (index < 0) return 0;
    let count = 0;
    for (const [user, readId] of this.receipts) {
      if (user === me) continue;
      const at = this.timeline.findIndex((e) => e.event_id === readId);
      if (at >= index) count += 1;
    }
    return count;
  }

  lastMessage() {
    for (let i = this.timeline.length - 1; i >= 0; i -= 1) {
      const ev = this.timeline[i];
      if (ev.type === 'm.room.message' && !isEdit(ev)) return ev;
    }
    return null;
  }
}

export function isEdit(ev) {
  return ev.content?.['m.relates_to']?.rel_type === 'm.replace';
}

export class Model {
  constructor(userId) {
    this.userId = userId;
    this.rooms = new Map();
    this.presence = new Map(); // user id -> {presence, last_active_ago, currently_active, at}
    this.direct = new Set();
    this.directMap = {};
  }

  room(id) {
    if (!this.rooms.has(id)) this.rooms.set(id, new Room(id));
    return this.rooms.get(id);
  }

  /** Applies one /sync body (or WebSocket sync frame); returns the ids of rooms that changed. */
  applySync(body, initial) {
    const changed = new Set();
    const rooms = body.rooms || {};
    for (const [id, r] of Object.entries(rooms.join || {})) {
      const room = this.room(id);
      changed.add(id);
      room.membership = 'join';
      for (const ev of r.state?.events || []) room.setState(ev);
      const tl = r.timeline || {};
      if (tl.limited && !initial) {
        // A gap: older events are fetched again on demand from prev_batch.
        room.timeline = room.timeline.filter((e) => e.pending);
        room.ids = new Set();
      }
      if (initial || tl.limited || room.prevBatch === null && room.timeline.length === 0) room.prevBatch = tl.prev_batch || null;
      for (const ev of tl.events || []) if (ev.state_key !== undefined) room.setState(ev);
      room.addEvents(tl.events || []);
      for (const ev of r.ephemeral?.events || []) {
        if (ev.type === 'm.typing') room.typing = (ev.content.user_ids || []).filter((u) => u !== this.userId);
        if (ev.type === 'm.receipt') {
          for (const [eventId, kinds] of Object.entries(ev.content || {})) {
            for (const user of Object.keys(kinds['m.read'] || {})) room.receipts.set(user, eventId);
          }
        }
      }
      if (r.unread_notifications) {
        room.notifications = r.unread_notifications.notification_count || 0;
        room.highlights = r.unread_notifications.highlight_count || 0;
      }
    }
    for (const [id, r] of Object.entries(rooms.invite || {})) {
      const room = this.room(id);
      changed.add(id);
      room.membership = 'invite';
      for (const ev of r.invite_state?.events || []) {
        room.setState(ev);
        if (ev.type === 'm.room.member' && ev.state_key === this.userId) {
          room.inviter = ev.sender;
          room.lastTs = Math.max(room.lastTs, ev.origin_server_ts || Date.now());
        }
      }
    }
    for (const [id, r] of Object.entries(rooms.leave || {})) {
      const room = this.room(id);
      changed.add(id);
      for (const ev of r.state?.events || []) room.setState(ev);
      for (const ev of r.timeline?.events || []) if (ev.state_key !== undefined) room.setState(ev);
      room.addEvents(r.timeline?.events || []);
      room.membership = 'leave';
    }
    for (const ev of body.presence?.events || []) {
      this.presence.set(ev.sender, { ...ev.content, at: Date.now() });
    }
    for (const ev of body.account_data?.events || []) {
      if (ev.type === 'm.direct') {
        this.directMap = ev.content || {};
        this.direct = new Set(Object.values(this.directMap).flat());
      }
    }
    return changed;
  }

  /** Rooms for the list: invites first, then by latest activity. */
  listed() {
    return [...this.rooms.values()]
      .filter((r) => r.membership === 'join' || r.membership === 'invite')
      .sort((a, b) => (a.membership === 'invite') - (b.membership === 'invite') === 0
        ? b.lastTs - a.lastTs
        : (a.membership === 'invite' ? -1 : 1));
  }

  presenceOf(userId) {
    return this.presence.get(userId) || null;
  }
}
