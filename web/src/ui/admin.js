// Server admins: broadcast a notice to every local user, and follow its progress.
import { MatrixError } from '../api.js';
import { clear, field, h } from './dom.js';

export function adminView(app) {
  const text = h('textarea', { rows: 4, required: true });
  const adminsOnly = h('input', { type: 'checkbox' });
  const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const form = h('form', {
    class: 'admin-form',
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (!text.value.trim()) {
        status.textContent = 'Write the notice first.';
        return;
      }
      form.querySelector('button').disabled = true;
      try {
        const started = await app.api.broadcast(text.value.trim(), adminsOnly.checked);
        const id = started.broadcast_id ?? started.id;
        status.textContent = 'Broadcast started…';
        for (;;) {
          const p = await app.api.broadcastProgress(id);
          status.textContent = `Broadcast ${p.state || p.status || ''}: ${p.sent ?? 0} of ${p.total ?? '?'} sent, ${p.failed ?? 0} failed`;
          if (['done', 'finished', 'complete', 'completed'].includes(p.state || p.status)) break;
          await new Promise((r) => setTimeout(r, 1000));
        }
        text.value = '';
      } catch (e) {
        status.textContent = e instanceof MatrixError ? `Failed: ${e.message}` : `Failed: ${e.message}`;
      } finally {
        form.querySelector('button').disabled = false;
      }
    },
  },
  field('Notice to every user of this server', text),
  h('div', { class: 'field checkbox' }, adminsOnly, h('label', { text: 'Only to server admins', for: (adminsOnly.id = 'admins-only') })),
  h('button', { type: 'submit', class: 'primary', text: 'Broadcast' }),
  status);
  return clear(h('section', { class: 'admin', 'aria-labelledby': 'admin-title' }),
    h('header', { class: 'chat-header' },
      h('button', { type: 'button', class: 'back', 'aria-label': 'Back to conversations', text: '←', onclick: () => app.openRoom(null) }),
      h('h2', { id: 'admin-title', text: 'Server administration' })),
    form);
}
