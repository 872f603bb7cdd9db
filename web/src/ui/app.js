// The signed-in client: header, conversation list, chat window, details panel, admin page.
// State comes only from sync (WebSocket or long-poll); sends go through an outbox that
// retries with the same transaction id until the server has them, so a message typed
// while the server restarts is delivered once it is back.
import { Api, MatrixError, NetworkError, parseUserInput, serverOf } from '../api.js';
import { Model } from '../model.js';
import { SyncConnection } from '../sync.js';
import { adminView } from './admin.js';
import { ChatView } from './chat.js';
import { DetailsView } from './details.js';
import { clear, field, h, timeAgo, toast } from './dom.js';

const FILTER = { room: { timeline: { limit: 30 }, state: { lazy_load_members: false } } };
const PRESENCE = ['online', 'unavailable', 'offline'];

export class ClientApp {
  constructor(root, session, onLogout) {
    this.root = root;
    this.session = session;
    this.onLogout = onLogout;
    this.api = new Api(session.baseUrl, session.token);
    this.model = new Model(session.userId);
    this.selected = null;
    this.view = 'chat';
    this.detailsOpen = false;
    this.isAdmin = false;
    this.outbox = [];
    this.flushing = false;
    this.lastRead = new Map();
    this.typingSent = 0;
    this.renderQueued = false;
    this.changed = new Set();
    this.chat = new ChatView(this);
    this.details = new DetailsView(this);
    this.sync = new SyncConnection(this.api, {
      filter: FILTER,
      onSync: (body, initial) => this.onSync(body, initial),
      onStatus: (s) => { this.statusEl.textContent = s; this.statusEl.dataset.state = s.startsWith('live') ? 'live' : 'down'; },
      onLoggedOut: () => this.loggedOut(),
    });
    this.sync.userId = session.userId;
    this.outboxKey = `tricolor.outbox.${session.userId}.${session.deviceId}`;
  }

  start() {
    this.statusEl = h('span', { class: 'conn', role: 'status', 'aria-live': 'polite', text: 'connecting' });
    const presence = h('select', {
      'aria-label': 'Your status',
      onchange: () => this.sync.setPresence(presence.value).catch((e) => toast(e.message, 'error')),
    }, PRESENCE.map((p) => h('option', { value: p, text: p })));
    this.adminButton = h('button', { type: 'button', hidden: true, text: 'Admin', onclick: () => this.openAdmin() });
    const header = h('header', { class: 'topbar' },
      h('span', { class: 'brand', text: 'Tricolor' }),
      h('span', { class: 'me', text: this.session.userId }),
      presence, this.statusEl, this.adminButton,
      h('button', { type: 'button', text: 'Sign out', onclick: () => this.logout() }));
    this.listEl = h('ul', { class: 'rooms', 'aria-label': 'Conversations' });
    this.nav = h('nav', { class: 'sidebar', 'aria-label': 'Conversations' }, this.startForms(), this.listEl);
    this.mainEl = h('div', { class: 'main' }, this.chat.el);
    this.layout = h('div', { class: 'layout' }, this.nav, this.mainEl, this.details.el);
    this.root.replaceChildren(header, this.layout);
    this.sync.start();
    this.restoreOutbox();
    this.api.isServerAdmin(this.session.userId).then((yes) => {
      this.isAdmin = yes;
      this.adminButton.hidden = !yes;
      this.root.dataset.admin = yes ? 'yes' : 'no';
    }, () => {});
    this.ticker = setInterval(() => { this.renderList(); this.chat.tick(); }, 60000);
    window.addEventListener('focus', () => this.markRead());
  }

  startForms() {
    const dmInput = h('input', { type: 'text', placeholder: 'bob@example.org', autocapitalize: 'none', spellcheck: false });
    const dm = h('form', {
      class: 'inline-form',
      onsubmit: (ev) => { ev.preventDefault(); this.startDirect(dmInput.value).then((ok) => { if (ok) dmInput.value = ''; }); },
    }, field('Chat with', dmInput), h('button', { type: 'submit', text: 'Start chat' }));
    const nameInput = h('input', { type: 'text', placeholder: 'Group name' });
    const membersInput = h('input', { type: 'text', placeholder: 'bob@example.org, carol@example.org', autocapitalize: 'none' });
    const group = h('form', {
      class: 'inline-form',
      onsubmit: (ev) => {
        ev.preventDefault();
        this.createGroup(nameInput.value, membersInput.value).then((ok) => {
          if (ok) { nameInput.value = ''; membersInput.value = ''; }
        });
      },
    }, field('New group', nameInput), field('Members (optional)', membersInput), h('button', { type: 'submit', text: 'Create group' }));
    return h('details', { class: 'start' }, h('summary', { text: 'New chat or group' }), dm, group);
  }

  // -- sync ---------------------------------------------------------------------------------
  onSync(body, initial) {
    for (const id of this.model.applySync(body, initial)) this.changed.add(id);
    this.changed.add('*presence');
    if (!this.renderQueued) {
      this.renderQueued = true;
      requestAnimationFrame(() => this.flushRender());
    }
  }

  flushRender() {
    this.renderQueued = false;
    const changed = this.changed;
    this.changed = new Set();
    this.renderList();
    if (this.view === 'chat' && this.selected && (changed.has(this.selected) || changed.has('*presence'))) {
      this.chat.render();
      if (changed.has(this.selected)) {
        this.markRead();
        if (this.detailsOpen) this.details.refresh();
      }
    }
  }

  renderList() {
    const me = this.model.userId;
    const rooms = this.model.listed();
    clear(this.listEl, rooms.length ? rooms.map((room) => {
      const last = room.lastMessage();
      const direct = room.isDirect(me, this.model.direct);
      const name = room.name(me);
      let preview = '';
      if (room.membership === 'invite') preview = `Invitation from ${room.displayName(room.inviter || '')}`;
      else if (last) {
        const content = room.shownContent(last) || {};
        const who = last.sender === me ? 'You' : room.displayName(last.sender);
        const body = content.msgtype === 'm.emote' ? `* ${content.body ?? ''}` : content.body ?? '';
        preview = room.redacted.has(last.event_id) ? `${who}: message recalled` : `${who}: ${body}`;
      }
      // The open conversation is being read: its count clears once the receipt is in.
      const seen = room.id === this.selected && this.view === 'chat' && document.visibilityState !== 'hidden';
      const unread = room.notifications > 0 && !seen ? h('span', {
        class: `unread${room.highlights ? ' highlight' : ''}`, 'aria-label': `${room.notifications} unread`, text: String(room.notifications),
      }) : null;
      const open = h('button', {
        type: 'button', class: 'room-button', 'aria-current': room.id === this.selected ? 'true' : null,
        onclick: () => this.openRoom(room.id),
      },
      direct ? this.presenceDot(room.partner(me)) : h('span', { class: 'group-icon', 'aria-hidden': 'true', text: '#' }),
      h('span', { class: 'room-text' }, h('span', { class: 'room-name', text: name }), h('span', { class: 'preview', text: preview.split('\n').pop() })),
      unread);
      const li = h('li', { class: 'room', dataset: { roomId: room.id } }, open);
      if (room.membership === 'invite') {
        li.append(h('div', { class: 'invite-actions' },
          h('button', { type: 'button', class: 'primary', text: 'Accept', 'aria-label': `Accept invitation to ${name}`, onclick: () => this.accept(room) }),
          h('button', { type: 'button', text: 'Decline', 'aria-label': `Decline invitation to ${name}`, onclick: () => this.api.leave(room.id).catch((e) => toast(e.message, 'error')) })));
      }
      return li;
    }) : h('li', { class: 'muted', text: 'No conversations yet.' }));
  }

  presenceDot(userId) {
    const p = userId ? this.model.presenceOf(userId) : null;
    const state = p?.presence || 'offline';
    return h('span', { class: `dot ${state}`, role: 'img', 'aria-label': state, title: state });
  }

  presenceText(userId) {
    const p = userId ? this.model.presenceOf(userId) : null;
    if (!p) return ' offline';
    if (p.presence === 'online' && p.currently_active) return ' online';
    const ago = typeof p.last_active_ago === 'number' ? `, last active ${timeAgo(p.last_active_ago + (Date.now() - p.at))}` : '';
    return ` ${p.presence}${ago}`;
  }

  // -- navigation ---------------------------------------------------------------------------
  openRoom(roomId) {
    this.view = 'chat';
    this.selected = roomId;
    this.layout.classList.toggle('in-room', Boolean(roomId));
    this.mainEl.replaceChildren(this.chat.el);
    this.chat.show(roomId);
    this.renderList();
    if (this.detailsOpen) this.details.show(roomId);
    if (roomId) {
      this.chat.input.focus();
      this.markRead();
    } else {
      this.listEl.querySelector('button')?.focus();
    }
  }

  openAdmin() {
    this.view = 'admin';
    this.selected = null;
    this.layout.classList.add('in-room');
    this.mainEl.replaceChildren(adminView(this));
    this.mainEl.querySelector('textarea')?.focus();
  }

  toggleDetails() {
    this.detailsOpen = !this.detailsOpen;
    this.details.el.hidden = !this.detailsOpen;
    if (this.detailsOpen) this.details.show(this.selected);
    this.chat.render();
  }

  // -- actions --------------------------------------------------------------------------------
  async startDirect(text) {
    if (!text.trim()) return false;
    const userId = parseUserInput(text, serverOf(this.model.userId));
    const existing = this.model.listed().find((r) => r.membership === 'join'
      && r.isDirect(this.model.userId, this.model.direct) && r.partner(this.model.userId) === userId);
    if (existing) {
      this.openRoom(existing.id);
      return true;
    }
    try {
      const { room_id: roomId } = await this.api.createRoom({ preset: 'trusted_private_chat', is_direct: true, invite: [userId] });
      const map = { ...this.model.directMap, [userId]: [...(this.model.directMap[userId] || []), roomId] };
      this.api.setAccountData(this.model.userId, 'm.direct', map).catch(() => {});
      await this.waitForRoom(roomId);
      this.openRoom(roomId);
      return true;
    } catch (e) {
      toast(`Cannot start a chat with ${userId}: ${e.message}`, 'error');
      return false;
    }
  }

  async createGroup(name, members) {
    if (!name.trim()) {
      toast('Give the group a name', 'error');
      return false;
    }
    const invite = members.split(/[,\s]+/).filter(Boolean).map((m) => parseUserInput(m, serverOf(this.model.userId)));
    try {
      const { room_id: roomId } = await this.api.createRoom({ name: name.trim(), preset: 'private_chat', invite });
      await this.waitForRoom(roomId);
      this.openRoom(roomId);
      return true;
    } catch (e) {
      toast(`Cannot create the group: ${e.message}`, 'error');
      return false;
    }
  }

  /** Resolves once sync has brought the room (so it opens with its state). */
  waitForRoom(roomId) {
    return new Promise((resolve) => {
      const check = () => {
        if (this.model.rooms.get(roomId)?.membership === 'join') resolve();
        else setTimeout(check, 50);
      };
      check();
    });
  }

  async accept(room) {
    try {
      await this.api.join(room.id, room.inviter ? [serverOf(room.inviter)] : []);
      await this.waitForRoom(room.id);
      this.openRoom(room.id);
    } catch (e) {
      toast(`Cannot join: ${e.message}`, 'error');
    }
  }

  /** Queues a message; the outbox sends in order and retries until the server has it. */
  send(roomId, type, content, txnId = this.api.newTxn()) {
    const room = this.model.room(roomId);
    const echo = room.addEcho(txnId, type, content, this.model.userId);
    this.outbox.push({ roomId, type, content, txnId, echo });
    this.saveOutbox();
    if (roomId === this.selected) this.chat.render(true);
    this.flushOutbox();
  }

  /** The outbox survives a reload of the page: its messages are sent again with the same
   * transaction ids, which the server deduplicates (same device, same token). */
  saveOutbox() {
    const items = this.outbox.map(({ roomId, type, content, txnId }) => ({ roomId, type, content, txnId }));
    localStorage.setItem(this.outboxKey, JSON.stringify(items));
  }

  restoreOutbox() {
    let items = [];
    try {
      items = JSON.parse(localStorage.getItem(this.outboxKey) || '[]');
    } catch {
      items = [];
    }
    for (const item of Array.isArray(items) ? items : []) this.send(item.roomId, item.type, item.content, item.txnId);
  }

  async flushOutbox() {
    if (this.flushing) return;
    this.flushing = true;
    let backoff = 500;
    try {
      while (this.outbox.length) {
        const item = this.outbox[0];
        try {
          await this.api.send(item.roomId, item.type, item.content, item.txnId);
          this.outbox.shift();
          this.saveOutbox();
          backoff = 500;
        } catch (e) {
          if (e instanceof NetworkError || (e instanceof MatrixError && e.errcode === 'M_LIMIT_EXCEEDED')) {
            const wait = e.body?.retry_after_ms || backoff;
            await new Promise((r) => setTimeout(r, wait));
            backoff = Math.min(backoff * 2, 5000);
            continue;
          }
          this.outbox.shift();
          this.saveOutbox();
          item.echo.failed = e.message;
          toast(`Not sent: ${e.message}`, 'error');
          if (item.roomId === this.selected) this.chat.render();
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  async sendFile(roomId, file) {
    try {
      toast(`Uploading ${file.name}…`);
      const { content_uri: url } = await this.api.upload(file);
      const isImage = file.type.startsWith('image/');
      const info = { mimetype: file.type || 'application/octet-stream', size: file.size };
      if (isImage) {
        const dims = await imageSize(file);
        if (dims) Object.assign(info, dims);
      }
      this.send(roomId, 'm.room.message', { msgtype: isImage ? 'm.image' : 'm.file', body: file.name, url, info });
    } catch (e) {
      toast(`Upload failed: ${e.message}`, 'error');
    }
  }

  async download(content) {
    try {
      const blob = await this.api.media(content.url, false);
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: content.body || 'download' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      toast(`Download failed: ${e.message}`, 'error');
    }
  }

  async recall(roomId, eventId) {
    try {
      await this.api.redact(roomId, eventId, this.api.newTxn());
      toast('Message recalled');
    } catch (e) {
      toast(e instanceof MatrixError ? `Cannot recall: ${e.message}` : `Cannot recall: ${e.message}`, 'error');
    }
  }

  async loadHistory(room) {
    try {
      const page = await this.api.messages(room.id, room.prevBatch);
      const events = (page.chunk || []).slice().reverse();
      room.addEvents(events, { atStart: true });
      room.prevBatch = page.end && page.chunk?.length ? page.end : null;
      if (room.id === this.selected) this.chat.render();
    } catch (e) {
      toast(`Cannot load older messages: ${e.message}`, 'error');
    }
  }

  /** Sends a read receipt for the newest event of the open room while the page is seen. */
  markRead() {
    const room = this.selected ? this.model.rooms.get(this.selected) : null;
    if (!room || room.membership !== 'join' || document.visibilityState === 'hidden') return;
    const latest = [...room.timeline].reverse().find((e) => !e.pending);
    if (!latest || this.lastRead.get(room.id) === latest.event_id) return;
    if (room.receipts.get(this.model.userId) === latest.event_id) return;
    this.lastRead.set(room.id, latest.event_id);
    this.api.receipt(room.id, latest.event_id).catch(() => this.lastRead.delete(room.id));
  }

  typingChanged(active) {
    if (!this.selected) return;
    const now = Date.now();
    if (active && now - this.typingSent < 10000) return;
    if (!active && this.typingSent === 0) return;
    this.typingSent = active ? now : 0;
    this.api.typing(this.selected, this.model.userId, active).catch(() => {});
  }

  async logout() {
    this.sync.stop();
    localStorage.removeItem(this.outboxKey);
    clearInterval(this.ticker);
    await this.api.logout().catch(() => {});
    this.onLogout();
  }

  loggedOut() {
    clearInterval(this.ticker);
    toast('Your session ended; sign in again.', 'error');
    this.onLogout();
  }
}

function imageSize(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => { resolve({ w: img.naturalWidth, h: img.naturalHeight }); URL.revokeObjectURL(url); };
    img.onerror = () => { resolve(null); URL.revokeObjectURL(url); };
    img.src = url;
  });
}

export { Api };
