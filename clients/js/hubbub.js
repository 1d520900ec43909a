// hubbub browser client: a WebSocket that reconnects by itself, for hubbub and any AWS API Gateway
// compatible WebSocket API. An ES module with no dependencies and no build step:
//
//   import { connect } from "/hubbub.js";
//   const ws = connect(`ws://${location.host}/dev`);
//   ws.on("message", (data) => console.log(data));
//   ws.onReconnectSend({ action: "join", room: "lobby" }); // replayed after every reconnect
//   ws.sendJson({ action: "join", room: "lobby" });
//
// Theory of operation (the same as the Python client, hubbub.client):
// - At most one native WebSocket at a time: a new one is created only after the previous one
//   fired "close", from one timer at a time. Two sockets of one client never coexist.
// - Delays use exponential backoff with FULL jitter: uniform(0, min(cap, base * 2 ** retry)), so
//   the clients a restarted server dropped come back spread over the window, not as one storm.
//   The retry count starts over only after a socket stayed open `stableAfter` ms.
// - Whether to reconnect depends on the close code (CLOSE_RULES, documented in docs/clients.md).
//   Browsers hide the HTTP status of a refused handshake (a 401 looks like a lost connection,
//   1006), so refusals are retried until the give-up policy says stop.
// - send() while disconnected queues (bounded, `queueSize`); on every new socket the resubscribe
//   messages go first, then the queue, then new sends. All of it runs synchronously in the
//   socket's "open" handler, so nothing can interleave.
// - A message handed to a socket the browser still believes open, but whose connection is
//   already dead, is lost: only an acknowledging protocol can fix that.
// - With `recovery: true` (hubbub's opt-in protocol, docs/recovery.md) the socket offers the
//   "hubbub.v1" subprotocol; a SessionState keeps the session token and the last offset per room,
//   unwraps room envelopes and drops duplicates and control frames. After a reconnect the resume
//   message goes first; resubscribe messages and the queue wait for the gateway's answer (at most
//   `recoveryTimeout` ms), which is reported as "recovered" or "not_recovered":
//     open -> resume -> (replayed messages) -> recovered | not_recovered -> queue -> reconnected

/** Close codes → "reconnect" | "stop"; the first matching [first, last] range wins. */
export const CLOSE_RULES = Object.freeze([
  [1000, 1000, "stop", "normal closure: the server closed on purpose (AWS DeleteConnection)"],
  [1001, 1001, "reconnect", "going away: server drain or restart, idle or maximum duration"],
  [1002, 1002, "reconnect", "protocol error (often a proxy in the way)"],
  [1003, 1003, "stop", "unsupported data: the application sent binary to a text-only API"],
  [1005, 1005, "reconnect", "no status code in the close frame"],
  [1006, 1006, "reconnect", "abnormal closure: TCP connection lost, or heartbeat timed out"],
  [1007, 1007, "stop", "invalid payload data: the application sent invalid text"],
  [1008, 1008, "stop", "policy violation (hubbub: message rate exceeded)"],
  [1009, 1009, "stop", "message too big: the application sent more than the server allows"],
  [1010, 1010, "stop", "mandatory extension missing"],
  [1011, 1011, "reconnect", "internal server error"],
  [1012, 1012, "reconnect", "service restart"],
  [1013, 1013, "reconnect", "try again later (hubbub: slow consumer dropped)"],
  [1014, 1014, "reconnect", "bad gateway"],
  [1015, 1015, "stop", "TLS handshake failure"],
  [3000, 3000, "stop", "unauthorized (IANA registry)"],
  [3003, 3003, "stop", "forbidden (IANA registry)"],
  [3000, 3999, "reconnect", "other registered library and framework codes"],
  [4000, 4999, "stop", "application codes: the application decided"],
  [0, 65535, "reconnect", "any other code"],
].map((rule) => Object.freeze(rule)));

/** "reconnect" or "stop" for a close code; `overrides` ({1000: "reconnect"}) win. */
export function closeAction(code, overrides = {}) {
  if (Object.prototype.hasOwnProperty.call(overrides, code)) return overrides[code];
  const rule = CLOSE_RULES.find(([first, last]) => first <= code && code <= last);
  return rule ? rule[2] : "reconnect";
}

const DEFAULT_BACKOFF = Object.freeze({
  base: 500, // ms: the first delay is uniform in [0, base]
  cap: 30000, // ms: no delay is longer
  maxAttempts: null, // connection attempts per outage; null = no limit
  maxElapsed: null, // ms per outage; null = no limit
  stableAfter: 5000, // ms a socket must stay open to end the outage (reset the backoff)
});

/** The upper bound of the `retry`-th delay (0-based): min(cap, base * 2 ** retry). */
export function backoffCeiling(retry, { base, cap } = DEFAULT_BACKOFF) {
  if (!(retry >= 0)) throw new RangeError(`retry must be >= 0, got ${retry}`);
  return Math.min(cap, base * 2 ** Math.min(retry, 64));
}

/** Draw the `retry`-th delay with full jitter: uniform in [0, backoffCeiling(retry)]. */
export function backoffDelay(retry, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const high = backoffCeiling(retry, backoff);
  return Math.min(high, Math.max(0, random() * high));
}

/** The client ended for good; `code`/`reason` are those of the last socket. */
export class ConnectionClosedError extends Error {
  constructor(message, { code = 1006, reason = "", unsent = 0 } = {}) {
    super(unsent ? `${message}; ${unsent} queued message(s) not sent (see unsent())` : message);
    this.name = "ConnectionClosedError";
    this.code = code;
    this.reason = reason;
    this.unsent = unsent;
  }
}

/** The give-up policy (maxAttempts / maxElapsed) ended an outage. */
export class RetriesExhaustedError extends ConnectionClosedError {
  constructor(message, { attempts, elapsed, unsent = 0 }) {
    super(message, { code: 1006, reason: "retries exhausted", unsent });
    this.name = "RetriesExhaustedError";
    this.attempts = attempts;
    this.elapsed = elapsed;
  }
}

/** send() while disconnected, and `queueSize` messages are already waiting. */
export class SendQueueFullError extends Error {
  constructor(limit) {
    super(
      `the outgoing queue is full (${limit} messages queued while disconnected); ` +
        "raise queueSize or wait for the 'reconnected' event",
    );
    this.name = "SendQueueFullError";
    this.limit = limit;
  }
}

const EVENTS = [
  "message",
  "open",
  "close",
  "reconnecting",
  "reconnected",
  "recovered", // recovery: true only
  "not_recovered",
];

/** The subprotocol of hubbub's recovery protocol. */
export const SUBPROTOCOL = "hubbub.v1";
// Every control frame the gateway writes starts with exactly these characters (compact JSON).
const CONTROL_PREFIX = '{"hubbub"';

const isInt = (value) => Number.isInteger(value);

/**
 * The client half of the recovery protocol, without I/O (the same as hubbub.client.recovery).
 * receive(text) classifies one text frame of an opted-in socket: {kind: "message", data, meta}
 * for the application (room envelopes unwrapped, duplicates dropped), {kind: "answer", ...} for
 * the answer to the resume in progress, or null (session, error, late answer: protocol business).
 * The newest session token is kept, except that a socket which dies while its resume is still
 * unanswered leaves the previous token in place (its session is the complete one).
 */
export class SessionState {
  constructor() {
    this.token = null; // presented by the next resume
    this.connectionId = null;
    this.positions = new Map(); // room -> {epoch, offset} of the last delivered message
    this.resuming = false;
    this.duplicates = 0;
    this._pendingToken = null;
  }

  /** The resume message for a new socket (its first message), or null without a token. */
  startResume() {
    if (this.token === null) return null;
    this.resuming = true;
    const rooms = Object.fromEntries(
      [...this.positions].map(([room, { epoch, offset }]) => [room, { epoch, offset }]),
    );
    return JSON.stringify({ hubbub: "resume", token: this.token, rooms });
  }

  /** The resume ended without an answer (timeout): this socket's session counts from now on. */
  settle() {
    this.resuming = false;
    if (this._pendingToken !== null) {
      this.token = this._pendingToken;
      this._pendingToken = null;
    }
  }

  socketClosed() {
    this.resuming = false;
    this._pendingToken = null;
  }

  receive(text) {
    const plain = { kind: "message", data: text, meta: null };
    if (!text.startsWith(CONTROL_PREFIX)) return plain;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return plain; // not JSON after all: the application's
    }
    if (frame === null || typeof frame !== "object") return plain;
    switch (frame.hubbub) {
      case "room":
        return this._envelope(frame);
      case "session":
        if (typeof frame.token === "string") {
          this.connectionId = typeof frame.connectionId === "string" ? frame.connectionId : null;
          if (this.resuming) this._pendingToken = frame.token;
          else this.token = frame.token;
        }
        return null;
      case "recovered":
        return this._answer(frame);
      case "presence":
      case "presence.members":
      case "presence.ok":
        return { kind: "presence", frame };
      case "error":
        if (isInt(frame.id)) return { kind: "presence", frame }; // the answer to a request
        console.warn("hubbub: the gateway refused a recovery message:", frame.message);
        return null;
      default:
        return null; // a control frame of a newer protocol version
    }
  }

  _envelope({ room, epoch, offset, data }) {
    if (typeof room !== "string" || typeof epoch !== "string" || !isInt(offset)) return null;
    if (typeof data !== "string") return null;
    const last = this.positions.get(room);
    if (last && last.epoch === epoch && offset <= last.offset) {
      this.duplicates += 1;
      return null;
    }
    this.positions.set(room, { epoch, offset });
    return { kind: "message", data, meta: { room, epoch, offset, replayed: this.resuming } };
  }

  _answer(frame) {
    const rooms = {};
    const raw = frame.rooms && typeof frame.rooms === "object" ? frame.rooms : {};
    for (const [room, r] of Object.entries(raw)) {
      if (!r || typeof r !== "object") continue;
      const report = {
        recovered: r.recovered === true,
        replayed: isInt(r.replayed) ? r.replayed : 0,
        reason: typeof r.reason === "string" ? r.reason : null,
        epoch: typeof r.epoch === "string" ? r.epoch : null,
        offset: isInt(r.offset) ? r.offset : null,
      };
      rooms[room] = report;
      // The answer's position is the head when the gateway read the history; live messages
      // delivered since may be past it already (same epoch: keep the larger).
      if (report.epoch !== null && report.offset !== null) {
        const last = this.positions.get(room);
        if (!last || last.epoch !== report.epoch || last.offset < report.offset) {
          this.positions.set(room, { epoch: report.epoch, offset: report.offset });
        }
      }
    }
    const awaited = this.resuming;
    this.settle();
    if (!awaited) return null;
    const reason = typeof frame.reason === "string" ? frame.reason : null;
    const recovered = frame.recovered === true;
    return { kind: "answer", recovered, resumed: reason === null, reason, rooms };
  }
}

const PRESENCE_ACTIONS = ["join", "leave", "update"];

/** The gateway refused a presence request (not a member of the room, data too large, ...). */
export class PresenceError extends Error {
  constructor(message) {
    super(message);
    this.name = "PresenceError";
  }
}

/**
 * A room as this client sees it: ws.room(name) (recovery only). Joining stays the application's
 * business; the room gives its presence: presence() asks the gateway for members and counts,
 * setPresence(data) changes this connection's data, on("join" | "leave" | "update", fn) calls
 * fn({room, action, member: {connectionId, user, data, joinedAt}, previousConnectionId}).
 */
export class Room {
  constructor(name, presence) {
    this.name = name;
    this._presence = presence;
  }

  /** Call fn on each join, leave or update in this room; returns a function that removes it. */
  on(action, fn) {
    if (!PRESENCE_ACTIONS.includes(action)) {
      throw new TypeError(`unknown presence event ${JSON.stringify(action)}`);
    }
    if (typeof fn !== "function") throw new TypeError("the callback must be a function");
    const key = `${action}\n${this.name}`;
    const list = this._presence.callbacks.get(key) || [];
    this._presence.callbacks.set(key, list);
    list.push(fn);
    return () => {
      const index = list.indexOf(fn);
      if (index >= 0) list.splice(index, 1);
    };
  }

  /**
   * Resolves to {room, connections, users, members: [...], next}: the room's counts and one page
   * of members (`limit` 1-1000); pass `next` as `cursor` for the next page.
   */
  async presence({ limit = 100, cursor = null, timeout = 10000 } = {}) {
    const message = { hubbub: "presence.get", room: this.name, limit };
    if (cursor !== null) message.cursor = cursor;
    const answer = await this._presence.request(message, timeout);
    return {
      room: this.name,
      connections: answer.connections,
      users: answer.users,
      members: Array.isArray(answer.members) ? answer.members : [],
      next: typeof answer.next === "string" ? answer.next : null,
    };
  }

  /** Replace this connection's presence data in the room (the others get an "update"). */
  async setPresence(data, { timeout = 10000 } = {}) {
    await this._presence.request({ hubbub: "presence.set", room: this.name, data }, timeout);
  }
}

/** Presence requests waiting for their answers and room callbacks, for one HubbubSocket. */
class PresenceState {
  constructor(send) {
    this._send = send;
    this._nextId = 1;
    this._waiting = new Map();
    this.callbacks = new Map();
  }

  request(message, timeout) {
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._waiting.delete(id);
        reject(new Error(`hubbub: no answer to ${message.hubbub} in ${timeout} ms`));
      }, timeout);
      this._waiting.set(id, (answer) => {
        clearTimeout(timer);
        this._waiting.delete(id);
        if (answer.hubbub === "error") reject(new PresenceError(String(answer.message)));
        else resolve(answer);
      });
      try {
        this._send({ ...message, id });
      } catch (error) {
        clearTimeout(timer);
        this._waiting.delete(id);
        reject(error);
      }
    });
  }

  receive(frame) {
    if (frame.hubbub !== "presence") {
      const settle = this._waiting.get(frame.id);
      if (settle) settle(frame);
      return;
    }
    const { room, action, member } = frame;
    if (typeof room !== "string" || !PRESENCE_ACTIONS.includes(action)) return;
    if (!member || typeof member !== "object") return;
    const event = {
      room,
      action,
      member,
      previousConnectionId:
        typeof frame.previousConnectionId === "string" ? frame.previousConnectionId : null,
    };
    for (const fn of (this.callbacks.get(`${action}\n${room}`) || []).slice()) {
      try {
        const result = fn(event);
        if (result && typeof result.then === "function") {
          result.then(undefined, (error) => console.error("hubbub: presence callback", error));
        }
      } catch (error) {
        console.error(`hubbub: presence ${action} callback failed`, error);
      }
    }
  }
}

function encode(message) {
  if (
    typeof message === "string" ||
    message instanceof ArrayBuffer ||
    ArrayBuffer.isView(message) ||
    (typeof Blob !== "undefined" && message instanceof Blob)
  ) {
    return message;
  }
  return JSON.stringify(message);
}

/** A reconnecting WebSocket; create it with connect(). */
export class HubbubSocket {
  constructor(url, options = {}) {
    const {
      protocols = [],
      backoff = {},
      closeCodes = {},
      queueSize = 1000,
      binaryType = "blob",
      WebSocket: Impl = globalThis.WebSocket,
      random = Math.random,
      recovery = false,
      recoveryTimeout = 10000,
    } = options;
    if (typeof Impl !== "function") throw new TypeError("no WebSocket implementation available");
    if (!/^wss?:\/\/./.test(String(url))) {
      throw new TypeError(`expected a ws:// or wss:// URL, got ${url}`);
    }
    const policy = { ...DEFAULT_BACKOFF, ...backoff };
    if (!(policy.base > 0) || !(policy.cap >= policy.base) || !Number.isFinite(policy.cap)) {
      throw new RangeError("backoff needs 0 < base <= cap (milliseconds, finite)");
    }
    if (!(queueSize >= 0)) throw new RangeError(`queueSize must be >= 0, got ${queueSize}`);
    if (!(recoveryTimeout > 0)) {
      throw new RangeError(`recoveryTimeout must be positive, got ${recoveryTimeout}`);
    }
    this.url = String(url);
    const offered = typeof protocols === "string" ? [protocols] : [...protocols];
    if (recovery && !offered.includes(SUBPROTOCOL)) offered.unshift(SUBPROTOCOL);
    this._protocols = offered;
    this._session = recovery ? new SessionState() : null;
    this._presence = new PresenceState((value) => this.sendJson(value));
    this._recoveryTimeout = recoveryTimeout;
    this._recovering = false; // the current socket speaks hubbub.v1
    this._resumeTimer = null; // set while waiting for the answer to a resume
    this._policy = policy;
    this._closeCodes = closeCodes;
    this._queueSize = queueSize;
    this._binaryType = binaryType;
    this._WebSocket = Impl;
    this._random = random;
    this._listeners = new Map(EVENTS.map((name) => [name, []]));
    this._resubscribe = [];
    this._outbox = [];
    this._socket = null;
    this._timer = null;
    this._state = "connecting";
    this._final = null;
    this._closeRequested = false;
    this._closeFrame = { code: 1000, reason: "" };
    // Outage bookkeeping (see the theory of operation).
    this._attempts = 0;
    this._retries = 0;
    this._outageStart = Date.now();
    this._closedAt = this._outageStart;
    this._everOpen = false;
    this._lastCode = 1006;
    this._dial();
  }

  /** "connecting", "replaying", "open", "waiting" (backoff) or "closed". */
  get state() {
    return this._state;
  }

  /** A socket is open and new sends go straight to it. */
  get connected() {
    return this._state === "open";
  }

  /** The client ended for good. */
  get closed() {
    return this._final !== null;
  }

  /** (recovery) The gateway's id for the current connection, from its session frame. */
  get connectionId() {
    return this._session ? this._session.connectionId : null;
  }

  /** (recovery) The token the next reconnect resumes from. */
  get sessionToken() {
    return this._session ? this._session.token : null;
  }

  /** (recovery) The last delivered {epoch, offset} per room: {room: {epoch, offset}}. */
  positions() {
    if (!this._session) return {};
    return Object.fromEntries([...this._session.positions].map(([r, p]) => [r, { ...p }]));
  }

  /** (recovery) A room's presence: ws.room("lobby").presence(), .on("join", fn); see Room. */
  room(name) {
    if (!this._session) throw new TypeError("presence needs connect(url, {recovery: true})");
    return new Room(String(name), this._presence);
  }

  /** Call fn on each `name` event; returns a function that removes it. */
  on(name, fn) {
    const list = this._listeners.get(name);
    if (!list) {
      const known = EVENTS.join(", ");
      throw new TypeError(`unknown event ${JSON.stringify(name)}; expected one of ${known}`);
    }
    if (typeof fn !== "function") throw new TypeError("the callback must be a function");
    list.push(fn);
    return () => this.off(name, fn);
  }

  /** Remove a callback added with on(). */
  off(name, fn) {
    const list = this._listeners.get(name);
    const index = list ? list.indexOf(fn) : -1;
    if (index >= 0) list.splice(index, 1);
  }

  /**
   * Send `message` on every new socket after a reconnect, before queued sends. A string or
   * binary goes as is, anything else as JSON; a function is called at each reconnect and returns
   * one message or an array of messages. Returns a function that removes the registration.
   * `{skipIfResumed: true}` (recovery): not sent when the gateway resumed the session (it rejoined
   * the rooms itself), sent when it could not. Use it for joins.
   */
  onReconnectSend(message, { skipIfResumed = false } = {}) {
    const value = typeof message === "function" ? message : encode(message);
    const entry = { value, skipIfResumed };
    this._resubscribe.push(entry);
    return () => {
      const index = this._resubscribe.indexOf(entry);
      if (index >= 0) this._resubscribe.splice(index, 1);
    };
  }

  /** Send text (or binary). Queued while disconnected; throws when the queue is full or closed. */
  send(data) {
    if (this._final) throw this._final;
    if (this._closeRequested) {
      throw new ConnectionClosedError("the connection is closing", { code: 1000 });
    }
    const socket = this._socket;
    // Browsers silently discard sends on a socket that is not OPEN: queue those instead.
    if (this._state === "open" && socket && socket.readyState === this._WebSocket.OPEN) {
      socket.send(data);
      return;
    }
    if (this._outbox.length >= this._queueSize) throw new SendQueueFullError(this._queueSize);
    this._outbox.push(data);
  }

  /** Send `value` as JSON text. */
  sendJson(value) {
    this.send(JSON.stringify(value));
  }

  /** Messages queued while disconnected and not sent yet. */
  unsent() {
    return this._outbox.slice();
  }

  /** Close with `code`/`reason` and stop reconnecting. Safe to call twice. */
  close(code = 1000, reason = "") {
    if (this._final) return;
    if (code !== 1000 && !(code >= 3000 && code <= 4999)) {
      throw new RangeError(`close code must be 1000 or 3000-4999 (browser rule), got ${code}`);
    }
    this._closeRequested = true;
    this._closeFrame = { code, reason };
    clearTimeout(this._timer);
    this._timer = null;
    const socket = this._socket;
    if (socket && socket.readyState <= this._WebSocket.OPEN) {
      // Its "close" event ends the client; until then no new socket can start.
      socket.close(code, reason);
      return;
    }
    this._end(
      new ConnectionClosedError("the connection was closed by the client", {
        code,
        reason,
        unsent: this._outbox.length,
      }),
      false,
    );
  }

  // -- internals ---------------------------------------------------------------------------
  _emit(name, ...args) {
    for (const fn of this._listeners.get(name).slice()) {
      try {
        const result = fn(...args);
        if (result && typeof result.then === "function") {
          result.then(undefined, (error) => {
            console.error(`hubbub: ${name} callback failed`, error);
          });
        }
      } catch (error) {
        console.error(`hubbub: ${name} callback failed`, error);
      }
    }
  }

  _dial() {
    this._timer = null;
    if (this._socket) throw new Error("hubbub: a socket is still open"); // the core invariant
    this._attempts += 1;
    this._state = "connecting";
    let socket;
    try {
      socket = new this._WebSocket(this.url, this._protocols);
    } catch (error) {
      // A malformed URL or a blocked port: nothing to retry.
      this._end(new ConnectionClosedError(`cannot open ${this.url}: ${error.message}`), false);
      return;
    }
    socket.binaryType = this._binaryType;
    this._socket = socket;
    let openedAt = null;
    socket.addEventListener("open", () => {
      openedAt = Date.now();
      this._onOpen(socket);
    });
    socket.addEventListener("message", (event) => {
      if (this._socket === socket) this._onMessage(socket, event);
    });
    socket.addEventListener("close", (event) => {
      this._socket = null;
      clearTimeout(this._resumeTimer);
      this._resumeTimer = null;
      if (this._session) this._session.socketClosed();
      this._onClose(event, openedAt);
    });
  }

  _onOpen(socket) {
    const reconnect = this._everOpen;
    this._everOpen = true;
    this._state = "replaying";
    this._recovering = this._session !== null && socket.protocol === SUBPROTOCOL;
    if (this._session && !this._recovering) {
      console.warn(`hubbub: the server did not accept ${SUBPROTOCOL}: no recovery on this socket`);
    }
    this._emit("open", { url: this.url, reconnect });
    if (this._socket !== socket || socket.readyState !== this._WebSocket.OPEN) return;
    if (reconnect && this._session) {
      const resume = this._recovering ? this._session.startResume() : null;
      if (resume !== null) {
        // The resume goes first; the rest waits for the answer (see _onMessage) or the timer.
        socket.send(resume);
        this._resumeTimer = setTimeout(() => {
          this._resumeTimer = null;
          this._session.settle(); // a late answer only updates the positions
          console.warn("hubbub: no recovery answer in time; carrying on");
          this._emit("not_recovered", notRecovered("timeout"));
          this._flush(socket, true, false);
        }, this._recoveryTimeout);
        return;
      }
      this._emit("not_recovered", notRecovered(this._recovering ? "no session" : "unsupported"));
    }
    this._flush(socket, reconnect, false);
  }

  _onMessage(socket, event) {
    if (!this._recovering || typeof event.data !== "string") {
      this._emit("message", event.data, event, null);
      return;
    }
    const item = this._session.receive(event.data);
    if (item === null) return;
    if (item.kind === "message") {
      this._emit("message", item.data, event, item.meta);
      return;
    }
    if (item.kind === "presence") {
      this._presence.receive(item.frame);
      return;
    }
    // The answer to our resume: report it, then send what waited for it.
    clearTimeout(this._resumeTimer);
    this._resumeTimer = null;
    if (item.recovered) {
      const replayed = Object.values(item.rooms).reduce((n, r) => n + r.replayed, 0);
      this._emit("recovered", { rooms: item.rooms, replayed });
    } else {
      const lost = Object.keys(item.rooms).filter((room) => !item.rooms[room].recovered);
      const reason = item.reason || (lost.length ? item.rooms[lost[0]].reason : null);
      const detail = notRecovered(reason || "not recovered", item.resumed, item.rooms);
      this._emit("not_recovered", detail);
    }
    this._flush(socket, true, item.resumed);
  }

  // Resubscribe (after a reconnect), then the queue, then "open": all synchronous, so nothing
  // the application sends meanwhile can overtake them.
  _flush(socket, reconnect, resumed) {
    if (this._socket !== socket || socket.readyState !== this._WebSocket.OPEN) return;
    if (reconnect) {
      for (const message of this._resubscribeMessages(resumed)) socket.send(message);
    }
    while (this._outbox.length) socket.send(this._outbox.shift());
    this._state = "open";
    if (reconnect) {
      const downtime = Date.now() - this._closedAt;
      this._emit("reconnected", { attempts: this._attempts, downtime });
    }
  }

  _resubscribeMessages(resumed) {
    const messages = [];
    for (const { value, skipIfResumed } of this._resubscribe.slice()) {
      if (resumed && skipIfResumed) continue;
      if (typeof value !== "function") {
        messages.push(value);
        continue;
      }
      try {
        const produced = value();
        if (Array.isArray(produced)) messages.push(...produced.map(encode));
        else messages.push(encode(produced));
      } catch (error) {
        console.error("hubbub: onReconnectSend function failed; skipped", error);
      }
    }
    return messages;
  }

  _onClose(event, openedAt) {
    const now = Date.now();
    if (this._closeRequested) {
      const { code, reason } = this._closeFrame;
      const error = new ConnectionClosedError("the connection was closed by the client", {
        code,
        reason,
        unsent: this._outbox.length,
      });
      this._end(error, false);
      return;
    }
    this._state = "waiting";
    if (openedAt !== null) {
      // A socket that was open: report it and decide by its close code.
      const code = event.code || 1005;
      this._lastCode = code;
      this._closedAt = now;
      if (closeAction(code, this._closeCodes) !== "reconnect") {
        const described = event.reason ? `${code} ${event.reason}` : String(code);
        const message =
          code === 1000
            ? `the server closed the connection (${described})`
            : `the connection was closed (${described}); this close code does not reconnect`;
        const options = { code, reason: event.reason, unsent: this._outbox.length };
        this._end(new ConnectionClosedError(message, options), true);
        return;
      }
      this._emit("close", { code, reason: event.reason, byServer: true, willReconnect: true });
      if (now - openedAt >= this._policy.stableAfter) {
        this._attempts = 0;
        this._retries = 0;
        this._outageStart = now;
      }
    }
    this._schedule();
  }

  _schedule() {
    const policy = this._policy;
    const elapsed = Date.now() - this._outageStart;
    const limitAttempts = policy.maxAttempts != null && this._attempts >= policy.maxAttempts;
    const limitTime = policy.maxElapsed != null && elapsed >= policy.maxElapsed;
    if (limitAttempts || limitTime) {
      const error = new RetriesExhaustedError(
        `gave up reconnecting to ${this.url} after ${this._attempts} attempt(s) ` +
          `in ${(elapsed / 1000).toFixed(1)}s`,
        { attempts: this._attempts, elapsed, unsent: this._outbox.length },
      );
      this._end(error, false);
      return;
    }
    let delay = backoffDelay(this._retries, policy, this._random);
    if (policy.maxElapsed != null) {
      delay = Math.max(0, Math.min(delay, policy.maxElapsed - elapsed)); // never past the deadline
    }
    this._retries += 1;
    this._state = "waiting";
    this._emit("reconnecting", { attempt: this._attempts + 1, delay, code: this._lastCode });
    this._timer = setTimeout(() => this._dial(), delay);
  }

  // The client is over: record why and emit the last event, a "close" that will not reconnect.
  // Its `error` explains the end, except after close() (undefined).
  _end(error, byServer) {
    if (this._final) return;
    this._final = error;
    this._state = "closed";
    clearTimeout(this._timer);
    this._timer = null;
    clearTimeout(this._resumeTimer);
    this._resumeTimer = null;
    this._emit("close", {
      code: error.code,
      reason: error.reason,
      byServer,
      willReconnect: false,
      error: this._closeRequested ? undefined : error,
    });
  }
}

function notRecovered(reason, resumed = false, rooms = {}) {
  const lost = Object.keys(rooms).filter((room) => !rooms[room].recovered);
  return { reason, resumed, rooms, lost };
}

/**
 * Open a reconnecting WebSocket to `url` (it starts connecting at once).
 *
 * Options: `protocols`; `backoff` {base, cap, maxAttempts, maxElapsed, stableAfter} in ms;
 * `closeCodes` overrides the policy ({1000: "reconnect"}); `queueSize` (1000) bounds sends
 * queued while disconnected; `binaryType`; `WebSocket` (an implementation, e.g. for Node);
 * `random` (the jitter source); `recovery` (false) speaks hubbub's recovery protocol, and
 * `recoveryTimeout` (10000 ms) bounds the wait for its answer after a reconnect.
 */
export function connect(url, options = {}) {
  return new HubbubSocket(url, options);
}
