// The group panel: members with roles and presence, invite, announcement, leave and
// dissolve, and the AI assistant's interaction records for DOCTORs. The forms are built
// once per conversation and only the lists are refreshed as events arrive, so nothing
// the user is typing is replaced under their cursor.
import { MatrixError, parseUserInput, serverOf } from '../api.js';
import { clear, field, h, toast } from './dom.js';

export class DetailsView {
  constructor(app) {
    this.app = app;
    this.el = h('aside', { class: 'details', id: 'details', 'aria-label': 'Conversation details', hidden: true });
    this.roomId = null;
    this.seq = 0;
  }

  /** Shows the panel of a conversation (built anew only when the conversation changes). */
  async show(roomId) {
    if (roomId !== this.roomId || !this.parts) this.build(roomId);
    await this.refresh();
  }

  build(roomId) {
    this.roomId = roomId;
    const room = roomId ? this.app.model.rooms.get(roomId) : null;
    if (!room) {
      this.parts = null;
      clear(this.el);
      return;
    }
    const api = this.app.api;
    const me = this.app.model.userId;
    const inviteInput = h('input', { type: 'text', placeholder: 'bob@example.org', autocapitalize: 'none', spellcheck: false });
    const invite = h('form', {
      class: 'inline-form',
      onsubmit: (ev) => {
        ev.preventDefault();
        if (!inviteInput.value.trim()) return;
        const user = parseUserInput(inviteInput.value, serverOf(me));
        this.act(() => api.invite(roomId, user), `Invited ${user}`).then(() => { inviteInput.value = ''; }, () => {});
      },
    }, field('Invite someone', inviteInput), h('button', { type: 'submit', text: 'Invite' }));
    const text = h('textarea', { rows: 2, value: room.announcement() || '' });
    const announce = h('form', {
      class: 'inline-form', hidden: true, // shown by refresh() to admins and the owner
      onsubmit: (ev) => {
        ev.preventDefault();
        this.act(() => api.setAnnouncement(roomId, text.value.trim()), 'Announcement posted').catch(() => {});
      },
    }, field('Announcement', text), h('button', { type: 'submit', text: 'Post announcement' }));
    const confirm = h('button', {
      type: 'button', class: 'danger', hidden: true, text: 'Yes, dissolve it for everyone',
      onclick: () => this.act(() => api.dissolve(roomId, 'This group was dissolved by its owner.'), 'The group is being dissolved').catch(() => {}),
    });
    const dissolve = h('button', {
      type: 'button', class: 'danger', text: 'Dissolve group', hidden: true,
      onclick: () => { confirm.hidden = false; confirm.focus(); },
    });
    const leave = h('button', {
      type: 'button', text: 'Leave', onclick: () => this.act(() => api.leave(roomId), 'You left the conversation').catch(() => {}),
    });
    this.parts = {
      members: h('ul', { class: 'members', 'aria-label': 'Members' }),
      invite, announce, records: h('div'), dissolve, confirm,
      actions: h('div', { class: 'danger-zone' }, leave, dissolve, confirm),
    };
    clear(this.el, h('h2', { text: 'Details' }), h('h3', { text: 'Members' }), this.parts.members,
      invite, announce, this.parts.records, this.parts.actions);
  }

  async refresh() {
    const roomId = this.roomId;
    const room = roomId ? this.app.model.rooms.get(roomId) : null;
    if (!room || !this.parts) return;
    const seq = ++this.seq;
    const me = this.app.model.userId;
    const api = this.app.api;
    const [members, records] = await Promise.all([
      api.groupMembers(roomId).then((r) => r.members || null, () => null),
      api.aiRecords(roomId).catch(() => null), // only DOCTORs and the room's admins may read them
    ]);
    if (seq !== this.seq || roomId !== this.roomId) return;
    const myRole = members?.find((m) => m.user_id === me)?.role || 'member';
    const isOwner = myRole === 'owner';
    const joined = room.membership === 'join';
    const p = this.parts;
    clear(p.members, (members || room.members('join').map((u) => ({ user_id: u, role: '' }))).map((m) => {
      const li = h('li', {},
        this.app.presenceDot(m.user_id),
        h('span', { class: 'member-name', text: room.displayName(m.user_id) }),
        m.role ? h('span', { class: `role role-${m.role}`, text: m.role }) : null,
        room.aiRole(m.user_id) === 'AI_ASSISTANT' ? h('span', { class: 'badge ai', text: 'AI' }) : null);
      if (isOwner && joined && m.user_id !== me && m.role !== 'owner') {
        const select = h('select', {
          'aria-label': `Role of ${room.displayName(m.user_id)}`,
          onchange: () => this.act(() => api.setRole(roomId, m.user_id, select.value), `${room.displayName(m.user_id)} is now ${select.value}`).catch(() => {}),
        }, h('option', { value: 'member', text: 'member', selected: m.role === 'member' }),
        h('option', { value: 'admin', text: 'admin', selected: m.role === 'admin' }));
        li.append(select);
      }
      return li;
    }));
    p.invite.hidden = !joined;
    p.announce.hidden = !(joined && (isOwner || myRole === 'admin'));
    p.actions.hidden = !joined;
    p.dissolve.hidden = !isOwner;
    if (!isOwner) p.confirm.hidden = true;
    clear(p.records, records ? this.records(room, records.chunk || []) : []);
  }

  records(room, records) {
    const rows = records.map((r) => h('tr', {},
      h('td', { text: r.status }),
      h('td', { text: r.provider || '' }),
      h('td', { text: room.displayName(r.user_id || '') }),
      h('td', { text: typeof r.duration_ms === 'number' ? `${r.duration_ms} ms` : '' }),
      h('td', { text: r.error || '' })));
    return h('section', { class: 'ai-records', 'aria-label': 'AI interaction records' },
      h('h3', { text: 'AI interaction records' }),
      rows.length
        ? h('table', {},
          h('thead', {}, h('tr', {}, ['Status', 'Provider', 'Asked by', 'Took', 'Error'].map((t) => h('th', { scope: 'col', text: t })))),
          h('tbody', {}, rows))
        : h('p', { class: 'muted', text: 'No interactions yet.' }));
  }

  async act(fn, done) {
    try {
      await fn();
      toast(done);
    } catch (e) {
      toast(e instanceof MatrixError ? e.message : `Failed: ${e.message}`, 'error');
      throw e;
    } finally {
      this.refresh();
    }
  }
}
