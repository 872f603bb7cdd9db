// The homeserver's HTTP APIs: Matrix client-server, Tricolor's /_tricolor extensions and the
// authenticated media repository. Every error is a MatrixError carrying errcode and error.

export class MatrixError extends Error {
  constructor(status, errcode, error, body = {}) {
    super(error || errcode || `HTTP ${status}`);
    this.status = status;
    this.errcode = errcode;
    this.body = body;
  }
}

/** A network failure (server down, connection reset): worth retrying, unlike a MatrixError. */
export class NetworkError extends Error {}

const CS = '/_matrix/client/v3';
const enc = encodeURIComponent;

/** `alice`, `@alice:hs`, `alice@hs` -> a user id (or the bare localpart when no server is named). */
export function parseUserInput(text, defaultServer) {
  const t = text.trim();
  if (t.startsWith('@')) return t;
  const at = t.lastIndexOf('@');
  if (at > 0) return `@${t.slice(0, at)}:${t.slice(at + 1)}`;
  return defaultServer ? `@${t}:${defaultServer}` : t;
}

export function serverOf(userId) {
  const i = userId.indexOf(':');
  return i < 0 ? '' : userId.slice(i + 1);
}

export class Api {
  constructor(baseUrl, token = null) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.token = token;
    this.txnBase = `w${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    this.txnSeq = 0;
  }

  newTxn() {
    this.txnSeq += 1;
    return `${this.txnBase}.${this.txnSeq}`;
  }

  async request(method, path, { body, query, raw, signal, contentType } = {}) {
    let url = this.baseUrl + path;
    if (query) {
      const qs = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) qs.set(k, String(v));
      const s = qs.toString();
      if (s) url += `?${s}`;
    }
    const headers = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let payload;
    if (raw !== undefined) {
      payload = raw;
      headers['Content-Type'] = contentType || 'application/octet-stream';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    let resp;
    try {
      resp = await fetch(url, { method, headers, body: payload, signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new NetworkError(`Cannot reach ${this.baseUrl}`);
    }
    const text = await resp.text().catch(() => '');
    let data = {};
    try {
      data = text ? JSON.parse(text) : {};
    } catch {
      data = {};
    }
    if (!resp.ok) {
      if (resp.status >= 502 && resp.status <= 504 && !data.errcode) throw new NetworkError(`Server unavailable (${resp.status})`);
      throw new MatrixError(resp.status, data.errcode || 'M_UNKNOWN', data.error || `HTTP ${resp.status}`, data);
    }
    return data;
  }

  get(path, query, opts = {}) { return this.request('GET', path, { query, ...opts }); }
  post(path, body = {}) { return this.request('POST', path, { body }); }
  put(path, body = {}) { return this.request('PUT', path, { body }); }

  // -- accounts ---------------------------------------------------------------------------
  /** Password login; `user` is a localpart or a full user id. */
  login(user, password) {
    return this.post(`${CS}/login`, {
      type: 'm.login.password',
      identifier: { type: 'm.id.user', user },
      password,
      initial_device_display_name: 'Tricolor web',
    });
  }

  /** Registration through the user-interactive auth flow (m.login.dummy stage). */
  async register(username, password) {
    const body = { username, password, initial_device_display_name: 'Tricolor web' };
    try {
      return await this.post(`${CS}/register`, body);
    } catch (e) {
      if (!(e instanceof MatrixError) || e.status !== 401 || !e.body.session) throw e;
      const flows = e.body.flows || [];
      const dummy = flows.some((f) => (f.stages || []).length === 1 && f.stages[0] === 'm.login.dummy');
      if (!dummy) throw new MatrixError(401, 'M_FORBIDDEN', 'This server needs a registration step this client cannot do (e.g. a token)');
      return this.post(`${CS}/register`, { ...body, auth: { type: 'm.login.dummy', session: e.body.session } });
    }
  }

  logout() { return this.post(`${CS}/logout`); }
  whoami() { return this.get(`${CS}/account/whoami`); }

  // -- sync -------------------------------------------------------------------------------
  sync(query, signal) { return this.get(`${CS}/sync`, query, { signal }); }

  // -- rooms ------------------------------------------------------------------------------
  createRoom(body) { return this.post(`${CS}/createRoom`, body); }
  join(roomIdOrAlias, via = []) {
    const query = via.length ? `?${via.map((s) => `via=${enc(s)}`).join('&')}` : '';
    return this.request('POST', `${CS}/join/${enc(roomIdOrAlias)}${query}`, { body: {} });
  }
  leave(roomId) { return this.post(`${CS}/rooms/${enc(roomId)}/leave`); }
  invite(roomId, userId) { return this.post(`${CS}/rooms/${enc(roomId)}/invite`, { user_id: userId }); }
  send(roomId, type, content, txnId) {
    return this.put(`${CS}/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txnId)}`, content);
  }
  redact(roomId, eventId, txnId, reason) {
    return this.put(`${CS}/rooms/${enc(roomId)}/redact/${enc(eventId)}/${enc(txnId)}`, reason ? { reason } : {});
  }
  messages(roomId, from, limit = 30) {
    return this.get(`${CS}/rooms/${enc(roomId)}/messages`, { dir: 'b', from, limit });
  }
  typing(roomId, userId, typing) {
    return this.put(`${CS}/rooms/${enc(roomId)}/typing/${enc(userId)}`, typing ? { typing: true, timeout: 20000 } : { typing: false });
  }
  receipt(roomId, eventId) {
    return this.post(`${CS}/rooms/${enc(roomId)}/receipt/m.read/${enc(eventId)}`, {});
  }
  setPresence(userId, presence) {
    return this.put(`${CS}/presence/${enc(userId)}/status`, { presence });
  }
  profile(userId) { return this.get(`${CS}/profile/${enc(userId)}`); }
  setAccountData(userId, type, content) {
    return this.put(`${CS}/user/${enc(userId)}/account_data/${enc(type)}`, content);
  }

  // -- media ------------------------------------------------------------------------------
  upload(file) {
    return this.request('POST', '/_matrix/media/v3/upload', {
      raw: file, contentType: file.type || 'application/octet-stream', query: { filename: file.name },
    });
  }

  /** A blob of an mxc:// file (authenticated media: the token goes in a header, not the URL). */
  async media(mxc, thumbnail) {
    const m = /^mxc:\/\/([^/]+)\/([^/?#]+)$/.exec(mxc || '');
    if (!m) throw new MatrixError(400, 'M_INVALID_PARAM', 'Not a media URL');
    const path = thumbnail
      ? `/_matrix/client/v1/media/thumbnail/${enc(m[1])}/${enc(m[2])}?width=320&height=240&method=scale`
      : `/_matrix/client/v1/media/download/${enc(m[1])}/${enc(m[2])}`;
    let resp;
    try {
      resp = await fetch(this.baseUrl + path, { headers: { Authorization: `Bearer ${this.token}` } });
    } catch {
      throw new NetworkError('Cannot fetch the file');
    }
    if (!resp.ok) throw new MatrixError(resp.status, 'M_NOT_FOUND', 'File not available');
    return resp.blob();
  }

  // -- Tricolor: groups, announcements, AI records, admin ----------------------------------
  groupMembers(roomId) { return this.get(`/_tricolor/client/v1/rooms/${enc(roomId)}/members`); }
  setRole(roomId, userId, role) {
    return this.put(`/_tricolor/client/v1/rooms/${enc(roomId)}/roles/${enc(userId)}`, { role });
  }
  transferOwnership(roomId, userId) {
    return this.post(`/_tricolor/client/v1/rooms/${enc(roomId)}/transfer_ownership`, { user_id: userId });
  }
  setAnnouncement(roomId, text) {
    return this.put(`/_tricolor/client/v1/rooms/${enc(roomId)}/announcement`, { text });
  }
  dissolve(roomId, message) {
    return this.post(`/_tricolor/client/v1/rooms/${enc(roomId)}/dissolve`, message ? { message } : {});
  }
  aiRecords(roomId) { return this.get(`/_tricolor/client/v1/rooms/${enc(roomId)}/ai/interactions`, { limit: 20 }); }
  broadcast(body, adminsOnly) {
    return this.post('/_tricolor/admin/v1/broadcast', { content: { msgtype: 'm.text', body }, admins_only: adminsOnly });
  }
  broadcastProgress(id) { return this.get(`/_tricolor/admin/v1/broadcast/${enc(id)}`); }
  /** Synapse's admin API answers a server admin's own record, and 403 to anyone else. */
  async isServerAdmin(userId) {
    try {
      await this.get(`/_synapse/admin/v2/users/${enc(userId)}`);
      return true;
    } catch (e) {
      if (e instanceof MatrixError) return false;
      throw e;
    }
  }
}
