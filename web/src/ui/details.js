// The group panel: members with roles and presence, invite, announcement, leave and
// dissolve, and the AI assistant's interaction records for DOCTORs.
import { MatrixError, parseUserInput, serverOf } from '../api.js';
import { clear, field, h, toast } from './dom.js';

export class DetailsView {
  constructor(app) {
    this.app = app;
    this.el = h('aside', { class: 'details', id: 'details', 'aria-label': 'Conversation details', hidden: true });
    this.roomId = null;
    this.seq = 0;
  }

  async show(roomId) {
    this.roomId = roomId;
    const seq = ++this.seq;
    const room = roomId ? this.app.model.rooms.get(roomId) : null;
    if (!room) {
      clear(this.el);
      return;
    }
    const me = this.app.model.userId;
    const api = this.app.api;
    let members = null;
    let records = null;
    try {
      members = (await api.groupMembers(roomId)).members || null;
    } catch (e) {
      members = null;
    }
    try {
      records = await api.aiRecords(roomId);
    } catch {
      records = null; // only DOCTORs and the room's admins may read them
    }
    if (seq !== this.seq) return;
    const myRole = members?.find((m) => m.user_id === me)?.role || 'member';
    const isOwner = myRole === 'owner';
    const isAdmin = isOwner || myRole === 'admin';

    const list = h('ul', { class: 'members', 'aria-label': 'Members' },
      (members || room.members('join').map((u) => ({ user_id: u, role: '' }))).map((m) => {
        const li = h('li', {},
          this.app.presenceDot(m.user_id),
          h('span', { class: 'member-name', text: room.displayName(m.user_id) }),
          m.role ? h('span', { class: `role role-${m.role}`, text: m.role }) : null,
          room.aiRole(m.user_id) === 'AI_ASSISTANT' ? h('span', { class: 'badge ai', text: 'AI' }) : null);
        if (isOwner && m.user_id !== me && m.role !== 'owner') {
          const select = h('select', {
            'aria-label': `Role of ${room.displayName(m.user_id)}`,
            onchange: () => this.act(() => api.setRole(roomId, m.user_id, select.value), `${room.displayName(m.user_id)} is now ${select.value}`),
          }, h('option', { value: 'member', text: 'member', selected: m.role === 'member' }),
          h('option', { value: 'admin', text: 'admin', selected: m.role === 'admin' }));
          li.append(select);
        }
        return li;
      }));

    const inviteInput = h('input', { type: 'text', placeholder: 'bob@example.org', autocapitalize: 'none', spellcheck: false });
    const invite = h('form', {
      class: 'inline-form',
      onsubmit: (ev) => {
        ev.preventDefault();
        const user = parseUserInput(inviteInput.value, serverOf(me));
        if (!inviteInput.value.trim()) return;
        this.act(() => api.invite(roomId, user), `Invited ${user}`).then(() => { inviteInput.value = ''; });
      },
    }, field('Invite someone', inviteInput), h('button', { type: 'submit', text: 'Invite' }));

    const parts = [h('h2', { text: 'Details' }), h('h3', { text: 'Members' }), list];
    if (room.membership === 'join') parts.push(invite);
    if (isAdmin && room.membership === 'join') {
      const text = h('textarea', { rows: 2, value: room.announcement() || '' });
      parts.push(h('form', {
        class: 'inline-form',
        onsubmit: (ev) => {
          ev.preventDefault();
          this.act(() => api.setAnnouncement(roomId, text.value.trim()), 'Announcement posted');
        },
      }, field('Announcement', text), h('button', { type: 'submit', text: 'Post announcement' })));
    }
    if (records) parts.push(this.records(room, records.records || records.chunk || []));
    if (room.membership === 'join') {
      const actions = h('div', { class: 'danger-zone' },
        h('button', { type: 'button', text: 'Leave', onclick: () => this.act(() => api.leave(roomId), 'You left the conversation') }));
      if (isOwner) {
        const confirm = h('button', {
          type: 'button', class: 'danger', hidden: true, text: 'Yes, dissolve it for everyone',
          onclick: () => this.act(() => api.dissolve(roomId, 'This group was dissolved by its owner.'), 'The group is being dissolved'),
        });
        actions.append(h('button', {
          type: 'button', class: 'danger', text: 'Dissolve group',
          onclick: () => { confirm.hidden = false; confirm.focus(); },
        }), confirm);
      }
      parts.push(actions);
    }
    clear(this.el, parts);
  }

  records(room, records) {
    const rows = records.map((r) => h('tr', {},
      h('td', { text: r.status }),
      h('td', { text: r.provider || '' }),
      h('td', { text: room.displayName(r.user_id || r.sender || '') }),
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
      if (this.roomId) this.show(this.roomId);
    }
  }
}
