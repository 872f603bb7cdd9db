// Sign in and registration: a server URL (this server by default), a user name as
// `alice`, `@alice:hs2.example` or `alice@hs2.example`, and a password.
import { Api, MatrixError, parseUserInput, serverOf } from '../api.js';
import { field, h } from './dom.js';

/** The client API URL a server name advertises (/.well-known/matrix/client), if any. */
async function discover(serverName) {
  try {
    const resp = await fetch(`https://${serverName}/.well-known/matrix/client`);
    if (!resp.ok) return null;
    const url = (await resp.json())['m.homeserver']?.base_url;
    return typeof url === 'string' ? url : null;
  } catch {
    return null;
  }
}

export function loginScreen(root, defaultServerUrl, onSession) {
  const server = h('input', { type: 'url', name: 'server', value: defaultServerUrl, required: true, autocomplete: 'url' });
  const user = h('input', {
    type: 'text', name: 'username', required: true, autocomplete: 'username', placeholder: 'alice or alice@example.org',
    autocapitalize: 'none', spellcheck: false,
  });
  const password = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'current-password' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const busy = (on) => form.querySelectorAll('button').forEach((b) => { b.disabled = on; });

  async function submit(mode) {
    error.textContent = '';
    if (!user.value.trim() || !password.value) {
      error.textContent = 'Enter a user name and a password.';
      return;
    }
    busy(true);
    try {
      const baseUrl = server.value.trim();
      const typed = user.value.trim();
      const localOrId = parseUserInput(typed);
      const named = localOrId.startsWith('@') ? serverOf(localOrId) : '';
      const attempt = (api) => (mode === 'register'
        ? api.register(named ? localOrId.slice(1, localOrId.indexOf(':')) : localOrId, password.value)
        : api.login(localOrId, password.value));
      let api = new Api(baseUrl);
      let res;
      try {
        res = await attempt(api);
      } catch (e) {
        // A user of another server typed while the URL field still names ours: ask that
        // server where its client API is (spec "Server Discovery", .well-known) and retry.
        const found = named && baseUrl === defaultServerUrl && e instanceof MatrixError ? await discover(named) : null;
        if (!found || found.replace(/\/+$/, '') === api.baseUrl) throw e;
        api = new Api(found);
        res = await attempt(api);
      }
      onSession({ baseUrl: api.baseUrl, token: res.access_token, userId: res.user_id, deviceId: res.device_id });
    } catch (e) {
      error.textContent = e instanceof MatrixError ? `${e.message} (${e.errcode})` : e.message;
    } finally {
      busy(false);
    }
  }

  const form = h('form', {
    class: 'login', 'aria-labelledby': 'login-title', novalidate: true,
    onsubmit: (ev) => { ev.preventDefault(); submit('login'); },
  },
  h('h1', { id: 'login-title', text: 'Tricolor' }),
  h('p', { class: 'muted', text: 'Sign in to your homeserver, or create an account.' }),
  field('Homeserver URL', server),
  field('User name', user),
  field('Password', password),
  error,
  h('div', { class: 'row' },
    h('button', { type: 'submit', class: 'primary', text: 'Sign in' }),
    h('button', { type: 'button', text: 'Create account', onclick: () => submit('register') })));
  root.replaceChildren(h('main', { class: 'login-page' }, form));
  user.focus();
}
