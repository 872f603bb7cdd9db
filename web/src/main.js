// Entry point: find the homeserver this page belongs to, resume a saved session or show
// the sign-in form.
import { ClientApp } from './ui/app.js';
import { loginScreen } from './ui/login.js';
import './styles.css';

const KEY = 'tricolor.session';
const root = document.getElementById('app');

async function defaultServerUrl() {
  try {
    const resp = await fetch('config.json', { cache: 'no-cache' });
    const cfg = await resp.json();
    if (typeof cfg.default_server_url === 'string') return cfg.default_server_url;
  } catch {
    // fall through
  }
  return window.location.origin;
}

function saved() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || 'null');
    return s && s.token && s.baseUrl && s.userId ? s : null;
  } catch {
    return null;
  }
}

async function boot() {
  const server = await defaultServerUrl();
  const start = (session) => {
    localStorage.setItem(KEY, JSON.stringify(session));
    new ClientApp(root, session, () => {
      localStorage.removeItem(KEY);
      loginScreen(root, server, start);
    }).start();
  };
  const session = saved();
  if (session) start(session);
  else loginScreen(root, server, start);
}

boot();
