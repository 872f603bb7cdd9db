// The chat window: header with presence, announcement banner, timeline with history on
// demand, typing line and composer (text, /me emotes, replies, edits, files).
import { isEdit } from '../model.js';
import { clear, clock, h, timeAgo } from './dom.js';

const STATE_TEXT = {
  'm.room.name': (ev, name) => `${name} named the chat "${ev.content?.name ?? ''}"`,
  'tricolor.announcement': (ev, name) => `${name} posted an announcement`,
};

function memberText(ev, room) {
  const who = room.displayName(ev.sender);
  const target = ev.content?.displayname || ev.state_key;
  const prev = ev.unsigned?.prev_content?.membership;
  switch (ev.content?.membership) {
    case 'join': return prev === 'join' ? null : `${target} joined`;
    case 'invite': return `${who} invited ${target}`;
    case 'leave': return ev.sender === ev.state_key ? `${target} left` : `${who} removed ${target}`;
    case 'ban': return `${who} banned ${target}`;
    case 'knock': return `${target} asked to join`;
    default: return null;
  }
}

/** The body without the reply fallback ("> <@bob:hs> quoted" lines) clients put in front. */
function stripFallback(body) {
  const lines = String(body ?? '').split('\n');
  let i = 0;
  while (i < lines.length && lines[i].startsWith('>')) i += 1;
  if (i > 0 && lines[i] === '') i += 1;
  return lines.slice(i).join('\n');
}

function formatSize(bytes) {
  if (typeof bytes !== 'number') return '';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1048576) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

export class ChatView {
  constructor(app) {
    this.app = app;
    this.roomId = null;
    this.replyTo = null;
    this.editing = null;
    this.thumbs = new Map(); // mxc -> object URL
    this.loadingHistory = false;
    this.el = h('section', { class: 'chat', 'aria-label': 'Chat' });
    this.header = h('header', { class: 'chat-header' });
    this.banner = h('div', { class: 'announcement', role: 'note', hidden: true });
    this.older = h('button', { class: 'older', type: 'button', text: 'Load older messages', onclick: () => this.loadOlder() });
    this.list = h('ol', { class: 'timeline', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' });
    this.scroller = h('div', { class: 'scroller', tabindex: '0', 'aria-label': 'Conversation history' }, this.older, this.list);
    this.scroller.addEventListener('scroll', () => {
      if (this.scroller.scrollTop < 40) this.loadOlder();
      if (this.atBottom()) this.app.markRead();
    });
    this.typingLine = h('div', { class: 'typing', 'aria-live': 'polite' });
    this.context = h('div', { class: 'context', hidden: true });
    this.input = h('textarea', {
      rows: 1, placeholder: 'Message', 'aria-label': 'Message', enterKeyHint: 'send',
      onkeydown: (ev) => this.onKey(ev), oninput: () => this.app.typingChanged(this.input.value !== ''),
    });
    this.file = h('input', { type: 'file', class: 'visually-hidden', id: 'attach', onchange: () => this.upload() });
    this.composer = h('form', { class: 'composer', onsubmit: (ev) => { ev.preventDefault(); this.submit(); } },
      h('label', { for: 'attach', class: 'attach button', title: 'Attach a file or image', text: 'Attach' }), this.file,
      this.input,
      h('button', { type: 'submit', class: 'primary', text: 'Send' }));
    this.empty = h('div', { class: 'empty', text: 'Choose a conversation, or start one.' });
    this.el.append(this.empty);
  }

  show(roomId) {
    if (this.roomId !== roomId) {
      this.replyTo = null;
      this.editing = null;
      this.input.value = '';
    }
    this.roomId = roomId;
    if (!roomId) {
      clear(this.el, this.empty);
      return;
    }
    clear(this.el, this.header, this.banner, this.scroller, this.typingLine, this.context, this.composer);
    this.render(true);
  }

  room() {
    return this.roomId ? this.app.model.rooms.get(this.roomId) : null;
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 30;
  }

  render(scrollToEnd = false) {
    const room = this.room();
    if (!room) return;
    const stick = scrollToEnd || this.atBottom();
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    this.renderHeader(room);
    const text = room.announcement();
    this.banner.hidden = !text;
    clear(this.banner, text ? [h('strong', { text: 'Announcement: ' }), text] : []);
    // The create event is the start of the conversation: nothing older to load.
    this.older.hidden = !room.prevBatch || room.timeline.some((e) => e.type === 'm.room.create');
    clear(this.list, room.timeline.map((ev) => this.item(room, ev)).filter(Boolean));
    const typers = room.typing.map((u) => room.displayName(u));
    this.typingLine.textContent = typers.length ? `${typers.join(', ')} ${typers.length > 1 ? 'are' : 'is'} typing…` : '';
    this.renderContext(room);
    const joined = room.membership === 'join';
    this.composer.hidden = !joined;
    if (stick) this.scroller.scrollTop = this.scroller.scrollHeight;
    else this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
  }

  renderHeader(room) {
    const me = this.app.model.userId;
    const title = h('h2', { id: 'chat-title', text: room.name(me) });
    let sub = null;
    if (room.isDirect(me, this.app.model.direct)) {
      const partner = room.partner(me);
      sub = h('p', { class: 'presence-line' }, this.app.presenceDot(partner), this.app.presenceText(partner));
    } else {
      sub = h('p', { class: 'muted', text: `${room.members('join').length} members` });
    }
    clear(this.header,
      h('button', { type: 'button', class: 'back', 'aria-label': 'Back to conversations', text: '←', onclick: () => this.app.openRoom(null) }),
      h('div', { class: 'title' }, title, sub),
      h('button', {
        type: 'button', text: 'Details', 'aria-expanded': String(this.app.detailsOpen), 'aria-controls': 'details',
        onclick: () => this.app.toggleDetails(),
      }));
    if (room.membership === 'leave') {
      this.header.append(h('p', { class: 'notice', role: 'status', text: 'You are no longer in this conversation.' }));
    }
  }

  renderContext() {
    const target = this.editing || this.replyTo;
    this.context.hidden = !target;
    if (!target) return;
    const room = this.room();
    const what = this.editing ? 'Editing your message' : `Replying to ${room.displayName(target.sender)}`;
    clear(this.context, h('span', { text: `${what}: ${stripFallback(room.shownContent(target).body).slice(0, 80)}` }),
      h('button', { type: 'button', text: 'Cancel', onclick: () => this.cancelContext() }));
  }

  cancelContext() {
    if (this.editing) this.input.value = '';
    this.editing = null;
    this.replyTo = null;
    this.renderContext();
    this.input.focus();
  }

  item(room, ev) {
    const me = this.app.model.userId;
    if (ev.type === 'm.room.redaction' || isEdit(ev)) return null;
    if (ev.state_key !== undefined) {
      const text = ev.type === 'm.room.member' ? memberText(ev, room) : STATE_TEXT[ev.type]?.(ev, room.displayName(ev.sender));
      return text ? h('li', { class: 'state-event', text }) : null;
    }
    if (ev.type !== 'm.room.message' && ev.type !== 'm.sticker') return null;
    const mine = ev.sender === me;
    const role = room.aiRole(ev.sender);
    const li = h('li', {
      class: `message${mine ? ' mine' : ''}${ev.pending ? ' pending' : ''}`, tabindex: '0', dataset: { eventId: ev.event_id },
    });
    const meta = h('div', { class: 'meta' },
      h('span', { class: 'sender', text: room.displayName(ev.sender) }),
      role === 'AI_ASSISTANT' ? h('span', { class: 'badge ai', title: 'Answer written by the AI assistant', text: 'AI' }) : null,
      h('time', { datetime: new Date(ev.origin_server_ts).toISOString(), text: clock(ev.origin_server_ts) }));
    li.append(meta);
    const recalled = room.redacted.has(ev.event_id) || (ev.unsigned?.redacted_because && true);
    if (recalled) {
      const by = room.redacted.get(ev.event_id);
      li.classList.add('recalled');
      li.append(h('p', { class: 'body trace', text: by && by !== ev.sender ? `Message recalled by ${room.displayName(by)}` : 'Message recalled' }));
      return li;
    }
    const content = room.shownContent(ev) || {};
    const reply = ev.content?.['m.relates_to']?.['m.in_reply_to']?.event_id;
    if (reply) {
      const original = room.event(reply);
      li.append(h('blockquote', { class: 'quote' }, original
        ? `${room.displayName(original.sender)}: ${stripFallback(room.shownContent(original)?.body || '').slice(0, 120)}`
        : 'In reply to an earlier message'));
    }
    li.append(this.body(room, ev, content));
    if (room.edits.has(ev.event_id)) li.append(h('span', { class: 'edited', text: '(edited)' }));
    const foot = h('div', { class: 'foot' });
    if (ev.pending) foot.append(h('span', { class: 'muted', text: ev.failed ? `Not sent: ${ev.failed}` : 'Sending…' }));
    if (mine && !ev.pending) {
      const n = room.readBy(ev.event_id, me);
      if (n > 0) foot.append(h('span', { class: 'read-by', text: `read by ${n}` }));
    }
    if (foot.childNodes.length) li.append(foot);
    if (!ev.pending) li.append(this.actions(room, ev, content, mine));
    return li;
  }

  body(room, ev, content) {
    const msgtype = content.msgtype;
    if (msgtype === 'm.emote') {
      return h('p', { class: 'body emote', text: `* ${room.displayName(ev.sender)} ${content.body ?? ''}` });
    }
    if (msgtype === 'm.image' && content.url) {
      const img = h('img', { class: 'thumb', alt: content.body || 'image', width: content.info?.w > 320 ? 320 : content.info?.w, loading: 'lazy' });
      this.loadThumb(content.url, img);
      return h('figure', { class: 'body image' },
        h('button', { type: 'button', class: 'thumb-button', 'aria-label': `Download ${content.body || 'image'}`, onclick: () => this.app.download(content) }, img),
        h('figcaption', { text: content.body || '' }));
    }
    if (['m.file', 'm.video', 'm.audio'].includes(msgtype) && content.url) {
      return h('p', { class: 'body file' },
        h('button', { type: 'button', class: 'link', onclick: () => this.app.download(content) },
          `Download ${content.body || 'file'}`),
        h('span', { class: 'muted', text: ` ${formatSize(content.info?.size)}` }));
    }
    return h('p', { class: `body${msgtype === 'm.notice' ? ' notice' : ''}`, text: stripFallback(content.body) });
  }

  async loadThumb(mxc, img) {
    let url = this.thumbs.get(mxc);
    if (!url) {
      try {
        url = URL.createObjectURL(await this.app.api.media(mxc, true));
        this.thumbs.set(mxc, url);
      } catch {
        img.alt = `${img.alt} (preview not available)`;
        return;
      }
    }
    img.src = url;
  }

  actions(room, ev, content, mine) {
    const me = this.app.model.userId;
    const bar = h('div', { class: 'actions', role: 'group', 'aria-label': 'Message actions' });
    const canReply = room.membership === 'join';
    if (canReply) bar.append(h('button', { type: 'button', text: 'Reply', onclick: () => this.startReply(ev) }));
    if (mine && ['m.text', 'm.emote', 'm.notice'].includes(content.msgtype)) {
      bar.append(h('button', { type: 'button', text: 'Edit', onclick: () => this.startEdit(ev) }));
    }
    if (canReply && (mine || room.canRedactOthers(me))) {
      bar.append(h('button', { type: 'button', text: 'Recall', onclick: () => this.app.recall(room.id, ev.event_id) }));
    }
    return bar;
  }

  startReply(ev) {
    this.editing = null;
    this.replyTo = ev;
    this.renderContext();
    this.input.focus();
  }

  startEdit(ev) {
    this.replyTo = null;
    this.editing = ev;
    this.input.value = stripFallback(this.room().shownContent(ev).body);
    this.renderContext();
    this.input.focus();
  }

  onKey(ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      this.submit();
    } else if (ev.key === 'Escape' && (this.replyTo || this.editing)) {
      ev.preventDefault();
      this.cancelContext();
    } else if (ev.key === 'ArrowUp' && this.input.value === '') {
      // Up in an empty composer edits your last message, as in most chat apps.
      const room = this.room();
      const last = [...room.timeline].reverse().find((e) => e.sender === this.app.model.userId && !e.pending
        && e.type === 'm.room.message' && !isEdit(e) && !room.redacted.has(e.event_id));
      if (last) {
        ev.preventDefault();
        this.startEdit(last);
      }
    }
  }

  submit() {
    const text = this.input.value.trim();
    if (!text || !this.roomId) return;
    const room = this.room();
    let content;
    if (this.editing) {
      const base = text.startsWith('/me ') ? { msgtype: 'm.emote', body: text.slice(4) } : { msgtype: this.editing.content.msgtype || 'm.text', body: text };
      content = {
        msgtype: base.msgtype, body: `* ${base.body}`, 'm.new_content': base,
        'm.relates_to': { rel_type: 'm.replace', event_id: this.editing.event_id },
      };
    } else {
      content = text.startsWith('/me ') ? { msgtype: 'm.emote', body: text.slice(4) } : { msgtype: 'm.text', body: text };
      if (this.replyTo) {
        const quoted = stripFallback(room.shownContent(this.replyTo).body).split('\n').map((l) => `> ${l}`);
        quoted[0] = `> <${this.replyTo.sender}> ${quoted[0].slice(2)}`;
        content.body = `${quoted.join('\n')}\n\n${content.body}`;
        content['m.relates_to'] = { 'm.in_reply_to': { event_id: this.replyTo.event_id } };
      }
    }
    this.app.send(this.roomId, 'm.room.message', content);
    this.input.value = '';
    this.replyTo = null;
    this.editing = null;
    this.renderContext();
    this.app.typingChanged(false);
  }

  async upload() {
    const file = this.file.files[0];
    this.file.value = '';
    if (file && this.roomId) await this.app.sendFile(this.roomId, file);
  }

  async loadOlder() {
    const room = this.room();
    if (!room || !room.prevBatch || this.loadingHistory) return;
    this.loadingHistory = true;
    this.older.textContent = 'Loading…';
    try {
      await this.app.loadHistory(room);
    } finally {
      this.loadingHistory = false;
      this.older.textContent = 'Load older messages';
    }
  }

  /** Relative times in the header age; refreshed by the app every minute. */
  tick() {
    const room = this.room();
    if (room) this.renderHeader(room);
  }
}

export { timeAgo };
