// Real-time updates: Tricolor's WebSocket transport (docs/websocket.md) with resume, falling
// back to long-poll GET /sync. Either way the client keeps the next_batch of the last
// response it has applied, so after a dropped connection or a server restart it resumes
// from there: nothing is skipped, nothing applied twice.
import { MatrixError, NetworkError } from './api.js';

const WS_PATH = '/_matrix/client/unstable/org.tricolor.ws/connect';
const LONG_POLL_MS = 30000;
const WS_FAILURES_BEFORE_FALLBACK = 3;
const RETRY_WS_AFTER_MS = 60000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class SyncConnection {
  /**
   * @param {import('./api.js').Api} api
   * @param {{filter: object, onSync: (body: object, initial: boolean) => void,
   *          onStatus: (status: string) => void, onLoggedOut: () => void}} hooks
   */
  constructor(api, hooks) {
    this.api = api;
    this.hooks = hooks;
    this.since = null;
    this.presence = 'online';
    this.stopped = false;
    this.ws = null;
    this.wsFailures = 0;
    this.backoff = 500;
    this.mode = 'connecting';
    this.pollAbort = null;
    this.queue = Promise.resolve();
  }

  status(mode) {
    this.mode = mode;
    this.hooks.onStatus(mode);
  }

  async start() {
    const filter = JSON.stringify(this.hooks.filter);
    while (!this.stopped && this.since === null) {
      try {
        const body = await this.api.sync({ filter, timeout: 0, set_presence: this.presence });
        this.apply(body, true);
      } catch (e) {
        if (this.fatal(e)) return;
        this.status('offline');
        await this.wait();
      }
    }
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.ws) this.ws.close(1000, 'bye');
    if (this.pollAbort) this.pollAbort.abort();
  }

  /** Own presence: over the socket when there is one (a socket's presence wins), else HTTP. */
  async setPresence(presence) {
    this.presence = presence;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ op: 'presence', presence, id: 'presence' }));
    } else {
      await this.api.setPresence(this.userId, presence);
    }
  }

  apply(body, initial = false) {
    this.hooks.onSync(body, initial);
    this.since = body.next_batch;
    this.backoff = 500;
  }

  fatal(e) {
    if (e instanceof MatrixError && (e.errcode === 'M_UNKNOWN_TOKEN' || e.errcode === 'M_MISSING_TOKEN')) {
      this.stopped = true;
      this.hooks.onLoggedOut();
      return true;
    }
    return false;
  }

  async wait() {
    await sleep(this.backoff);
    this.backoff = Math.min(this.backoff * 2, 5000);
  }

  async loop() {
    let fellBackAt = 0;
    while (!this.stopped) {
      const tryWs = this.wsFailures < WS_FAILURES_BEFORE_FALLBACK
        || Date.now() - fellBackAt > RETRY_WS_AFTER_MS;
      if (tryWs && typeof WebSocket !== 'undefined') {
        const reachedReady = await this.runSocket();
        if (this.stopped) return;
        if (reachedReady) {
          this.wsFailures = 0;
        } else if (await this.apiReachable()) {
          // The server answers HTTP but not the socket (a proxy without WebSocket support):
          // after a few tries, long-poll instead.
          this.wsFailures += 1;
          if (this.wsFailures >= WS_FAILURES_BEFORE_FALLBACK) fellBackAt = Date.now();
        }
        this.status('reconnecting');
        await this.wait();
        this.polled = false;
        continue;
      }
      await this.pollOnce();
    }
  }

  async apiReachable() {
    try {
      await this.api.get('/_matrix/client/versions');
      return true;
    } catch {
      return false;
    }
  }

  /** One long-poll round; errors back off and try again. */
  async pollOnce() {
    this.pollAbort = new AbortController();
    try {
      // The first poll answers at once, so the connection shows as live without waiting.
      const body = await this.api.sync({
        since: this.since, timeout: this.polled ? LONG_POLL_MS : 0, filter: JSON.stringify(this.hooks.filter),
        set_presence: this.presence,
      }, this.pollAbort.signal);
      this.polled = true;
      this.status('live (long-poll)');
      this.apply(body);
    } catch (e) {
      if (this.stopped || this.fatal(e)) return;
      this.status('reconnecting');
      await this.wait();
    } finally {
      this.pollAbort = null;
    }
  }

  /** A socket from auth to close; resolves with whether it got as far as `ready`. */
  runSocket() {
    return new Promise((resolve) => {
      const url = this.api.baseUrl.replace(/^http/, 'ws') + WS_PATH;
      let ready = false;
      let heartbeat = null;
      let ws;
      try {
        ws = new WebSocket(url);
      } catch {
        resolve(false);
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        ws.send(JSON.stringify({
          op: 'auth', access_token: this.api.token, since: this.since,
          filter: JSON.stringify(this.hooks.filter), set_presence: this.presence,
        }));
      };
      ws.onmessage = (msg) => {
        let frame;
        try {
          frame = JSON.parse(msg.data);
        } catch {
          return;
        }
        if (frame.op === 'ready') {
          ready = true;
          this.status('live (WebSocket)');
          const every = Math.max(1000, (frame.heartbeat_interval_ms || 30000) * 0.8);
          heartbeat = setInterval(() => ws.readyState === WebSocket.OPEN && ws.send('{"op":"ping"}'), every);
        } else if (frame.op === 'sync') {
          // Frames are applied one after another, each acknowledged once applied.
          this.queue = this.queue.then(() => {
            if (this.ws !== ws) return;
            this.apply(frame);
            if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ op: 'ack', next_batch: frame.next_batch }));
          });
        }
      };
      ws.onclose = (ev) => {
        clearInterval(heartbeat);
        if (this.ws === ws) this.ws = null;
        if (ev.code === 4001) {
          this.stopped = true;
          this.hooks.onLoggedOut();
        } else if (ev.code === 4003) {
          this.stopped = true; // replaced by a newer socket of this device (another tab)
          this.status('replaced by another tab');
        }
        this.queue.then(() => resolve(ready));
      };
    });
  }
}

export { NetworkError };
