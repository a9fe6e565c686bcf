// hush web: the page is only the screen. The `hush web` process holds every key and does
// every operation; this script speaks JSON-RPC 2.0 (docs/RPC.md) to it over one WebSocket.
//
// Rules this file keeps:
// - Peer-controlled strings (messages, names, group names, reasons) reach the DOM only via
//   textContent / createTextNode, never innerHTML.
// - No inline style or script (the server sends a strict CSP); look comes from app.css classes.
// - The token comes from the URL fragment (never sent in a request), lives in sessionStorage
//   for reloads, and is removed from the address bar at once.

const TOKEN_KEY = 'hush-web-token';
/**
 * The `instance` of the hush web run this tab first reached (its `hello`). A reconnect talks
 * only to that same run: anything else on the port (a stopped hush web's port taken by another
 * program) gets nothing from this page, not one request.
 */
const INSTANCE_KEY = 'hush-web-instance';
/** A socket that says nothing this long after opening is not a hush web (which says hello first). */
const HELLO_TIMEOUT_MS = 10000;
/** Reconnect delays (ms): quick at first (a restart), then slower so a dead server costs little. */
const BACKOFF_MS = [300, 1000, 2000, 4000, 8000, 15000];
/** Past this many messages a conversation renders only the newest ones (the DOM stays light). */
const MAX_RENDERED = 1500;
/**
 * A conversation reads only its newest this-many messages: a peer can fill a history with big
 * messages, and a whole history in one frame would stall hush web and this tab.
 */
const HISTORY_LIMIT = 500;

// ---------------------------------------------------------------------------------------------
// DOM helpers

const $ = (id) => document.getElementById(id);

/** An element with a class and (safe, text-only) content. */
function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

/**
 * Peer text is shown exactly, except C0/C1 control characters (terminal escapes, NUL...), which
 * become visible symbols; newlines and tabs stay. Bidi isolation is done in CSS.
 */
function showable(text) {
  return String(text ?? '').replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x20 ? String.fromCharCode(0x2400 + code) : '\ufffd';
  });
}

const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

/**
 * Message text as nodes: text nodes, and each control character as a small visible `\x1b`
 * badge (fonts rarely have the Control Pictures, and a raw escape must not pass unseen).
 */
function textNodes(text) {
  const frag = document.createDocumentFragment();
  let run = '';
  for (const ch of String(text ?? '')) {
    if (CONTROL.test(ch)) {
      if (run) frag.append(document.createTextNode(run));
      run = '';
      const code = ch.charCodeAt(0).toString(16).padStart(2, '0');
      const badge = h('span', 'ctl', `\\x${code}`);
      badge.title = 'a control character';
      frag.append(badge);
    } else run += ch;
  }
  if (run) frag.append(document.createTextNode(run));
  return frag;
}

/** Bidi embedding, override and isolate controls and marks: they could reorder the page's own text. */
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** A one-line form of peer text (names, previews, reasons, tooltips): no control or bidi characters. */
function oneLine(text) {
  return showable(text)
    .replace(BIDI, '')
    .replace(/[\n\t\u2400-\u241f]+/g, ' ')
    .trim();
}

/** Peer text inside a `title` (plain text, no elements): one line, bidi-isolated (FSI … PDI). */
function iso(text) {
  return `\u2068${oneLine(text)}\u2069`;
}

/** Peer text inside page text: one line in its own bidi-isolated <bdi>. */
function peer(text) {
  return h('bdi', null, oneLine(text));
}

const AVATAR_COLOURS = 8;

/** Initials + a stable colour class for a name (the colour comes from app.css). */
function paintAvatar(node, name, isGroup) {
  const clean = oneLine(name).replace(/^#/, '');
  node.textContent = isGroup ? '#' : (clean.slice(0, 1).toUpperCase() || '?');
  node.className = `avatar c${colourOf(clean)}${isGroup ? ' group' : ''}`;
}

/** A stable colour index for a name, so a sender keeps one colour everywhere. */
function colourOf(name) {
  let hash = 0;
  for (const ch of oneLine(name).replace(/^#/, '')) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % AVATAR_COLOURS;
}

function timeOf(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
}

function fullTimeOf(ms) {
  return new Date(ms).toLocaleString();
}

function dayKey(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function dayLabel(ms) {
  const d = new Date(ms);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(ms) === dayKey(today.getTime())) return 'Today';
  if (dayKey(ms) === dayKey(yesterday.getTime())) return 'Yesterday';
  const opts = { weekday: 'long', day: 'numeric', month: 'long' };
  if (d.getFullYear() !== today.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts);
}

/** The short stamp in the chat list: a time today, a date otherwise. */
function listStamp(ms) {
  if (dayKey(ms) === dayKey(Date.now())) return timeOf(ms);
  return new Date(ms).toLocaleDateString([], { day: 'numeric', month: 'short' });
}

// ---------------------------------------------------------------------------------------------
// State

const S = {
  token: null,
  ws: null,
  nextId: 1,
  /** id -> {resolve, reject} of requests in flight on the current socket. */
  pending: new Map(),
  /**
   * 'connecting' (never reached yet) | 'hello' (socket open, waiting for the server's hello;
   * nothing may be sent) | 'open' | 'down' | 'gone' (another server answered: never again)
   */
  sock: 'connecting',
  /** The pinned hush web run (`hello` instance), or null before the first hello. */
  instance: null,
  helloTimer: 0,
  attempts: 0,
  retryAt: 0,
  retryTimer: 0,
  tickTimer: 0,
  everOpen: false,
  ready: false,
  me: null,
  status: { connected: false, queued: 0 },
  contacts: new Map(),
  groups: new Map(),
  /** chat key -> {text, ts, outgoing, from} of its newest message (for the list). */
  last: new Map(),
  /** The open chat's key (contact name or '#group'), or null. */
  open: null,
  /** The open chat's messages, oldest first. */
  messages: [],
  /** Whether the open chat has older messages than those in S.messages (not shown). */
  truncated: false,
  /** Read-marking of the open chat: one `history {limit:1, mark_read}` in flight, one queued. */
  marking: false,
  markAgain: false,
  /** chat key -> [{text, ts}] system lines seen while this page lives (groups). */
  system: new Map(),
  drafts: new Map(),
  /** Bumped on every open, so a slow answer for a chat no longer open is ignored. */
  openSeq: 0,
  refreshing: false,
  /** The limit of a re-read queued behind the one in flight (0: none). */
  refreshAgain: 0,
  refreshMark: false,
  /** The chat whose safety number / members dialog is showing. */
  dialogChat: null,
  /** The 60 digits the safety dialog shows (sent with a confirmation), or null. */
  safetyShown: null,
};

const narrow = () => matchMedia('(max-width: 40rem)').matches;
const isGroupKey = (key) => typeof key === 'string' && key.startsWith('#');
const groupName = (key) => key.replace(/^#/, '');
const chatKeyOf = (m) => (m.group !== null && m.group !== undefined ? `#${groupName(m.group)}` : m.contact);
const msgKey = (m) => `${m.from ?? ''}\u0000${m.id}`;

// ---------------------------------------------------------------------------------------------
// JSON-RPC over the WebSocket

class RpcError extends Error {
  constructor(message, code, kind) {
    super(message);
    this.code = code;
    this.kind = kind;
  }
}

function call(method, params = {}) {
  return new Promise((resolve, reject) => {
    const ws = S.ws;
    // Nothing goes out before the server proved it is the pinned run (S.sock turns 'open' only then).
    if (!ws || ws.readyState !== WebSocket.OPEN || S.sock !== 'open') {
      reject(new RpcError('hush web is not reachable', 0, 'disconnected'));
      return;
    }
    const id = S.nextId++;
    S.pending.set(id, { resolve, reject });
    try {
      ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    } catch (e) {
      S.pending.delete(id);
      reject(new RpcError('hush web is not reachable', 0, 'disconnected'));
    }
  });
}

/** The `instance` of a frame that is a well-formed `hello`, else null. */
function helloInstance(msg) {
  if (!msg || typeof msg !== 'object' || msg.method !== 'hello' || msg.id !== undefined) return null;
  const instance = msg.params?.instance;
  return typeof instance === 'string' && /^[0-9a-f]{32}$/i.test(instance) ? instance.toLowerCase() : null;
}

function parseFrame(event) {
  if (typeof event.data !== 'string') return null;
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}

/**
 * The first frame of every socket must be `hello` with the pinned instance (or, on the tab's very
 * first socket, any instance, which is then pinned). Anything else: this is not our hush web.
 */
function onFirstFrame(ws, event) {
  clearTimeout(S.helloTimer);
  const instance = helloInstance(parseFrame(event));
  if (!instance || (S.instance && instance !== S.instance)) {
    serverGone(ws);
    return;
  }
  if (!S.instance) {
    S.instance = instance;
    try {
      sessionStorage.setItem(INSTANCE_KEY, instance);
    } catch {
      // Storage refused: the pin still holds for this page's life.
    }
  }
  S.sock = 'open';
  S.everOpen = true;
  S.attempts = 0;
  renderConn();
  renderConvHeader();
  bootstrap().catch((e) => showError(e.message));
}

/**
 * The server on the port is not the hush web this tab was opened for (it stopped and something
 * else took the port, or it never said hello): close, forget the token, never reconnect.
 */
function serverGone(ws) {
  clearTimeout(S.helloTimer);
  clearTimeout(S.retryTimer);
  clearInterval(S.tickTimer);
  if (S.ws === ws) S.ws = null;
  try {
    ws?.close();
  } catch {
    // Already closing.
  }
  for (const w of S.pending.values()) w.reject(new RpcError('hush web is gone', 0, 'disconnected'));
  S.pending.clear();
  S.ready = false;
  S.sock = 'gone';
  try {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(INSTANCE_KEY);
  } catch {
    // Nothing stored.
  }
  renderConn();
  renderConvHeader();
}

function onFrame(event) {
  const msg = parseFrame(event);
  if (!msg || typeof msg !== 'object') return;
  // A later hello must still be ours (a server never changes its run in the middle of a socket).
  if (msg.method === 'hello') {
    if (helloInstance(msg) !== S.instance) serverGone(S.ws);
    return;
  }
  if (msg.id !== undefined && msg.id !== null && (msg.result !== undefined || msg.error)) {
    const waiter = S.pending.get(msg.id);
    if (!waiter) return;
    S.pending.delete(msg.id);
    if (msg.error) {
      const err = msg.error;
      waiter.reject(new RpcError(String(err.message ?? 'error'), err.code, err.data?.kind));
    } else {
      waiter.resolve(msg.result);
    }
    return;
  }
  if (typeof msg.method === 'string') {
    try {
      onNotification(msg.method, msg.params ?? {});
    } catch (e) {
      console.warn('hush web: notification handling failed', e);
    }
  }
}

function connect() {
  clearTimeout(S.retryTimer);
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  let ws;
  try {
    ws = new WebSocket(`${scheme}://${location.host}/api/ws?token=${encodeURIComponent(S.token)}`);
  } catch {
    scheduleReconnect();
    return;
  }
  S.ws = ws;
  let first = true;
  ws.addEventListener('open', () => {
    if (S.ws !== ws) return;
    // Send nothing (not even subscribe) until the server's hello proves it is our hush web.
    S.sock = 'hello';
    clearTimeout(S.helloTimer);
    S.helloTimer = setTimeout(() => {
      if (S.ws === ws && S.sock === 'hello') serverGone(ws);
    }, HELLO_TIMEOUT_MS);
  });
  ws.addEventListener('message', (e) => {
    if (S.ws !== ws) return;
    if (first) {
      first = false;
      onFirstFrame(ws, e);
    } else onFrame(e);
  });
  ws.addEventListener('close', () => {
    if (S.ws !== ws) return;
    clearTimeout(S.helloTimer);
    S.ws = null;
    S.ready = false;
    for (const w of S.pending.values()) w.reject(new RpcError('hush web is not reachable', 0, 'disconnected'));
    S.pending.clear();
    S.sock = 'down';
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  const delay = BACKOFF_MS[Math.min(S.attempts, BACKOFF_MS.length - 1)];
  S.attempts += 1;
  S.retryAt = Date.now() + delay;
  clearTimeout(S.retryTimer);
  S.retryTimer = setTimeout(connect, delay);
  renderConn();
  clearInterval(S.tickTimer);
  S.tickTimer = setInterval(() => {
    if (S.sock === 'open') clearInterval(S.tickTimer);
    else renderConn();
  }, 1000);
}

/** After every (re)connect: the order WEB.md asks for, then the open chat again. */
async function bootstrap() {
  await call('subscribe');
  const me = await call('whoami');
  S.me = me;
  renderMe();
  try {
    applyStatus(await call('status'), false);
  } catch (e) {
    // A server without `status` still works: assume the relay is reachable.
    if (e.code === -32601) applyStatus({ connected: true, queued: 0 }, false);
    else throw e;
  }
  await Promise.all([loadContacts(), loadGroups()]);
  S.ready = true;
  renderChats();
  if (S.open && chatExists(S.open)) await openChat(S.open, { keepScroll: true });
  else if (S.open) closeChat();
  loadPreviews();
}

// ---------------------------------------------------------------------------------------------
// Loading

async function loadContacts() {
  const list = await call('contacts');
  S.contacts = new Map((Array.isArray(list) ? list : []).map((c) => [c.name, c]));
  renderChats();
  renderConvHeader();
}

async function loadGroups() {
  const list = await call('group.list');
  S.groups = new Map((Array.isArray(list) ? list : []).map((g) => [`#${groupName(g.group)}`, g]));
  renderChats();
  renderConvHeader();
}

function chatExists(key) {
  return isGroupKey(key) ? S.groups.has(key) : S.contacts.has(key);
}

/** The newest message of every chat, for the list's preview lines and ordering. */
async function loadPreviews() {
  const keys = [...S.contacts.keys(), ...S.groups.keys()];
  await Promise.all(
    keys.map(async (key) => {
      try {
        const msgs = await call('history', { contact: key, limit: 1 });
        if (Array.isArray(msgs) && msgs.length) noteLast(key, msgs[msgs.length - 1], false);
      } catch {
        // A chat that cannot be read just has no preview.
      }
    }),
  );
  renderChats();
}

function msgTime(m) {
  return m.received_at ?? m.sent_at ?? Date.now();
}

function noteLast(key, m, render = true) {
  const ts = msgTime(m);
  const prev = S.last.get(key);
  if (prev && prev.ts > ts) return;
  S.last.set(key, { text: m.text, ts, outgoing: m.from === null || m.from === undefined, from: m.from });
  if (render) renderChats();
}

// ---------------------------------------------------------------------------------------------
// Notifications

function onNotification(method, p) {
  switch (method) {
    case 'message':
      onMessage(p);
      break;
    case 'delivered':
      setStates(p.ids, 'delivered', null);
      break;
    case 'failed':
      setStates([p.id], 'failed', p.reason);
      if (p.reason) showError('Message to ', peer(p.contact), ' failed: ', peer(p.reason));
      break;
    case 'key_changed':
      if (S.ready) loadContacts().catch(() => {});
      break;
    case 'group':
      onGroupChange(p);
      break;
    case 'rejected':
      if (p.contact) showError('Refused a message from ', peer(p.contact), ': ', peer(p.reason));
      else showError('Refused a message: ', peer(p.reason));
      break;
    case 'status':
      applyStatus(p, true);
      break;
    default:
      break;
  }
}

function onMessage(m) {
  if (!m || typeof m.id !== 'string') return;
  const key = chatKeyOf(m);
  noteLast(key, m, false);
  if (S.ready && !chatExists(key)) {
    // A new contact (trust on first use) or a group we just joined.
    (isGroupKey(key) ? loadGroups() : loadContacts()).catch(() => {});
  }
  if (key === S.open) {
    upsertMessage(m);
    scheduleMessages({ stick: true });
    markRead();
  } else {
    const chat = isGroupKey(key) ? S.groups.get(key) : S.contacts.get(key);
    if (chat) chat.unread = (chat.unread ?? 0) + 1;
  }
  renderChats();
}

function setStates(ids, state, reason) {
  if (!Array.isArray(ids)) return;
  const wanted = new Set(ids);
  let changed = false;
  for (const m of S.messages) {
    if ((m.from === null || m.from === undefined) && wanted.has(m.id)) {
      m.state = state;
      if (reason) m.failure = reason;
      changed = true;
    }
  }
  if (changed) scheduleMessages({});
}

function groupChangeText(p) {
  const me = S.me?.name;
  const who = (n) => (n === me ? 'You' : oneLine(n));
  const list = (a) => (Array.isArray(a) ? a.map((n) => (n === me ? 'you' : oneLine(n))).join(', ') : '');
  switch (p.change) {
    case 'joined':
      return `${who(p.by)} added you. Members: ${list(p.members)}`;
    case 'added':
      return `${who(p.by)} added ${list(p.members)}`;
    case 'removed':
      return `${who(p.by)} removed ${list(p.members)}`;
    case 'you_were_removed':
      return `${who(p.by)} removed you: you can no longer read or send in this group`;
    case 'leave_requested':
      return `${who(p.member)} is leaving`;
    case 'key_changed':
      return `Warning: ${oneLine(p.member)}'s key in this group is not the one you trust for ${oneLine(p.member)} (KEY CHANGED)`;
    case 'not_a_contact':
      return `${oneLine(p.member)} is not one of your contacts (fingerprint ${oneLine(p.fingerprint)})`;
    default:
      return 'The group changed';
  }
}

function onGroupChange(p) {
  if (!p || typeof p.group !== 'string') return;
  const key = `#${groupName(p.group)}`;
  const line = { text: groupChangeText(p), ts: Date.now(), warn: p.change === 'key_changed' || p.change === 'you_were_removed' };
  if (!S.system.has(key)) S.system.set(key, []);
  S.system.get(key).push(line);
  S.last.set(key, { text: line.text, ts: line.ts, outgoing: false, from: null, system: true });
  if (S.open === key) scheduleMessages({ stick: true });
  if (S.ready) {
    loadGroups()
      .then(() => {
        if (S.dialogChat === key && $('members-dialog').open) loadMembers().catch(() => {});
      })
      .catch(() => {});
  }
}

function applyStatus(st, fromNotification) {
  if (!st || typeof st !== 'object') return;
  const prev = S.status;
  const next = { connected: Boolean(st.connected), queued: Number(st.queued) || 0 };
  S.status = next;
  renderConn();
  if (!fromNotification) return;
  // queued dropped: something reached the relay; reconnected: states may have moved.
  if (!S.open) return;
  if (next.connected && !prev.connected) refreshOpen(false, HISTORY_LIMIT);
  else if (next.queued < prev.queued) {
    // Only queued messages can have moved on: re-read from the oldest one shown (plus a margin).
    const i = S.messages.findIndex((m) => (m.from === null || m.from === undefined) && m.state === 'queued');
    if (i >= 0) refreshOpen(false, Math.min(HISTORY_LIMIT, S.messages.length - i + 20));
  }
}

// ---------------------------------------------------------------------------------------------
// The open conversation

function upsertMessage(m) {
  const k = msgKey(m);
  const i = S.messages.findIndex((x) => msgKey(x) === k);
  if (i >= 0) S.messages[i] = m;
  else S.messages.push(m);
  trimMessages();
}

/** The page keeps at most MAX_RENDERED messages of the open chat. */
function trimMessages() {
  if (S.messages.length > MAX_RENDERED) {
    S.messages = S.messages.slice(-MAX_RENDERED);
    S.truncated = true;
  }
}

/**
 * Apply a re-read of the newest `limit` messages: they replace the tail they overlap; with no
 * overlap they replace everything (older ones, if any, are then not shown).
 */
function applyTail(msgs, limit) {
  if (!msgs.length) return;
  const first = msgKey(msgs[0]);
  const i = S.messages.findIndex((m) => msgKey(m) === first);
  if (i >= 0) S.messages = S.messages.slice(0, i).concat(msgs);
  else {
    S.messages = msgs.slice();
    S.truncated = msgs.length >= limit;
  }
  trimMessages();
}

/**
 * Re-read the newest `limit` messages of the open chat (coalesced: at most one read in flight
 * and one queued, which takes the larger limit).
 */
async function refreshOpen(mark, limit = HISTORY_LIMIT) {
  if (!S.open || S.sock !== 'open') return;
  if (S.refreshing) {
    S.refreshAgain = Math.max(S.refreshAgain || 0, limit);
    S.refreshMark = S.refreshMark || mark;
    return;
  }
  S.refreshing = true;
  const key = S.open;
  const seq = S.openSeq;
  try {
    const msgs = await call('history', { contact: key, limit, mark_read: mark || !document.hidden });
    if (seq === S.openSeq && Array.isArray(msgs)) {
      applyTail(msgs, limit);
      if (mark || !document.hidden) clearUnread(key);
      scheduleMessages({});
    }
  } catch (e) {
    if (e.kind !== 'disconnected') showError(e.message);
  } finally {
    S.refreshing = false;
    if (S.refreshAgain) {
      const again = S.refreshAgain;
      const againMark = S.refreshMark;
      S.refreshAgain = 0;
      S.refreshMark = false;
      refreshOpen(againMark, again);
    }
  }
}

/**
 * The open chat's messages are on screen: mark them read in hush web without re-reading them
 * (`limit: 1`; coalesced). A hidden tab marks nothing; coming back into view does.
 */
async function markRead() {
  if (!S.open || S.sock !== 'open' || document.hidden) return;
  if (S.marking) {
    S.markAgain = true;
    return;
  }
  S.marking = true;
  const key = S.open;
  try {
    await call('history', { contact: key, mark_read: true, limit: 1 });
    if (S.open === key) clearUnread(key);
  } catch (e) {
    if (e.kind !== 'disconnected') showError(e.message);
  } finally {
    S.marking = false;
    if (S.markAgain) {
      // A burst of incoming messages costs hush web one mark per quarter second, not one each.
      S.markAgain = false;
      S.marking = true;
      setTimeout(() => {
        S.marking = false;
        markRead();
      }, 250);
    }
  }
}

function clearUnread(key) {
  const chat = isGroupKey(key) ? S.groups.get(key) : S.contacts.get(key);
  if (chat && chat.unread) {
    chat.unread = 0;
    renderChats();
  }
}

async function openChat(key, opts = {}) {
  if (S.open && S.open !== key) S.drafts.set(S.open, $('composer').value);
  const switching = S.open !== key;
  S.open = key;
  const seq = ++S.openSeq;
  document.body.classList.add('chat-open');
  if (switching) {
    S.messages = [];
    S.truncated = false;
    $('composer').value = S.drafts.get(key) ?? '';
    autosize();
  }
  renderConvHeader();
  renderChats();
  if (switching) renderMessages({ stick: true });
  try {
    const msgs = await call('history', { contact: key, limit: HISTORY_LIMIT, mark_read: true });
    if (seq !== S.openSeq) return;
    S.messages = Array.isArray(msgs) ? msgs : [];
    S.truncated = S.messages.length >= HISTORY_LIMIT;
    const newest = S.messages[S.messages.length - 1];
    if (newest) noteLast(key, newest, false);
    clearUnread(key);
    renderChats();
    renderMessages({ stick: !opts.keepScroll });
  } catch (e) {
    if (seq === S.openSeq) showError(e.message);
  }
  if (switching && !opts.keepScroll) {
    // Keyboard users land where they can type (or, when sending is blocked, on the way back).
    if (!$('composer').disabled) $('composer').focus();
    else if (narrow()) $('back').focus();
  }
}

function closeChat() {
  if (S.open) S.drafts.set(S.open, $('composer').value);
  S.open = null;
  S.openSeq += 1;
  S.messages = [];
  S.truncated = false;
  document.body.classList.remove('chat-open');
  renderConvHeader();
  renderMessages({});
  renderChats();
}

async function sendComposer() {
  const box = $('composer');
  const key = S.open;
  const text = box.value;
  if (!key || box.disabled || !text.trim()) return;
  box.value = '';
  S.drafts.delete(key);
  autosize();
  $('composer-bar').classList.add('sending');
  try {
    const m = await call('send', { to: key, text });
    if (m && typeof m.id === 'string') {
      if (m.error && !m.failure) m.failure = m.error;
      if (S.open === key) {
        upsertMessage(m);
        renderMessages({ stick: true });
      }
      noteLast(key, m, false);
      renderChats();
      if (!isGroupKey(key) && !S.contacts.has(key)) loadContacts().catch(() => {});
    }
  } catch (e) {
    // Nothing was committed: give the text back so it is not lost.
    if (S.open === key && !box.value) {
      box.value = text;
      autosize();
    }
    showError(e.message);
    if (e.kind === 'key_changed') loadContacts().catch(() => {});
  } finally {
    $('composer-bar').classList.remove('sending');
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering

function renderMe() {
  const name = S.me?.name ?? 'hush';
  $('me').textContent = oneLine(name);
  $('me-avatar').hidden = !S.me;
  $('me').title = S.me ? `${iso(S.me.name)} on ${iso(S.me.relay)}\nfingerprint ${iso(S.me.fingerprint)}` : '';
  paintAvatar($('me-avatar'), name, false);
}

function renderConn() {
  const conn = $('conn');
  const queued = $('queued');
  const banner = $('sock-banner');
  let state;
  let text;
  if (S.sock === 'gone') {
    state = 'disconnected';
    text = 'hush web is gone';
  } else if (!S.token) {
    state = 'disconnected';
    text = 'No access token';
  } else if (S.sock === 'open') {
    state = S.status.connected ? 'connected' : 'offline';
    text = S.status.connected ? 'Connected' : 'Relay offline';
  } else if ((S.sock === 'connecting' || S.sock === 'hello') && !S.everOpen && S.attempts === 0) {
    state = 'disconnected';
    text = 'Reaching hush web…';
  } else {
    state = 'disconnected';
    text = 'hush web is not reachable';
  }
  conn.dataset.state = state;
  conn.textContent = text;
  conn.title =
    state === 'offline'
      ? 'The relay cannot be reached. Messages you send wait in the queue and go out when it is back.'
      : state === 'connected'
        ? `Connected to the relay${S.me ? ` ${iso(S.me.relay)}` : ''}`
        : text;
  const q = S.sock === 'open' ? S.status.queued : 0;
  queued.textContent = String(q);
  queued.hidden = q === 0;
  queued.title = `${q} ${q === 1 ? 'item' : 'items'} (messages and receipts) waiting for the relay`;

  if (S.sock === 'gone') {
    banner.hidden = false;
    banner.textContent =
      'This hush web is gone: it stopped, and whatever answers on its address now is not it, so this page sends it nothing. Open the new URL hush web printed when you started it again.';
  } else if (!S.token) {
    banner.hidden = true;
    banner.textContent = '';
  } else if (S.sock === 'down' || ((S.sock === 'connecting' || S.sock === 'hello') && S.attempts > 0)) {
    const secs = Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000));
    banner.hidden = false;
    banner.textContent = `hush web is not reachable. ${secs > 0 ? `Retrying in ${secs} s.` : 'Retrying…'} If you restarted it, open the new URL it printed.`;
  } else {
    banner.hidden = true;
    banner.textContent = '';
  }
  document.body.dataset.sock = S.sock;
}

function allChats() {
  const out = [];
  for (const [key, c] of S.contacts) {
    out.push({ key, group: false, name: c.name, unread: c.unread ?? 0, verified: Boolean(c.verified), keyChanged: Boolean(c.key_changed), gone: false });
  }
  for (const [key, g] of S.groups) {
    out.push({ key, group: true, name: key, unread: g.unread ?? 0, verified: false, keyChanged: false, gone: g.member === false });
  }
  out.sort((a, b) => {
    const ta = S.last.get(a.key)?.ts ?? 0;
    const tb = S.last.get(b.key)?.ts ?? 0;
    if (ta !== tb) return tb - ta;
    return a.name.localeCompare(b.name);
  });
  return out;
}

/** One chat list row, built once per key and updated in place (so focus survives). */
const chatRows = new Map();
/** The row that holds the list's single Tab stop. */
let rovingKey = null;

function chatRow(key) {
  let li = chatRows.get(key);
  if (li) return li;
  li = h('li', 'chat');
  li.dataset.chat = key;
  li.tabIndex = -1;
  const avatar = h('span', 'avatar');
  avatar.setAttribute('aria-hidden', 'true');
  const main = h('div', 'chat-main');
  const top = h('div', 'chat-top');
  const name = h('span', 'name');
  const verified = h('span', 'verified', '✓');
  verified.title = 'Verified: safety number compared';
  verified.setAttribute('aria-label', 'verified');
  const changed = h('span', 'key-changed', 'KEY CHANGED');
  changed.title = 'The identity key changed: sending is blocked until you accept it';
  const stamp = h('span', 'chat-time');
  top.append(name, verified, changed, stamp);
  const bottom = h('div', 'chat-bottom');
  const preview = h('span', 'preview');
  const unread = h('span', 'unread', '0');
  unread.hidden = true;
  bottom.append(preview, unread);
  main.append(top, bottom);
  li.append(avatar, main);
  li.addEventListener('click', () => openChat(key));
  li.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      openChat(key);
    } else if (['ArrowDown', 'ArrowUp', 'Home', 'End'].includes(e.key)) {
      e.preventDefault();
      const list = li.parentElement;
      const next =
        e.key === 'ArrowDown'
          ? li.nextElementSibling
          : e.key === 'ArrowUp'
            ? li.previousElementSibling
            : e.key === 'Home'
              ? list?.firstElementChild
              : list?.lastElementChild;
      next?.focus();
    }
  });
  // The list is one Tab stop (roving tabindex): the row last focused keeps it.
  li.addEventListener('focus', () => {
    rovingKey = key;
    for (const row of chatRows.values()) row.tabIndex = row === li ? 0 : -1;
  });
  chatRows.set(key, li);
  return li;
}

function renderChats() {
  const ul = $('chats');
  const chats = allChats();
  const keep = new Set(chats.map((c) => c.key));
  for (const [key, li] of chatRows) {
    if (!keep.has(key)) {
      li.remove();
      chatRows.delete(key);
    }
  }
  let total = 0;
  const tabKey = keep.has(rovingKey) ? rovingKey : keep.has(S.open) ? S.open : chats[0]?.key;
  chats.forEach((c, i) => {
    const li = chatRow(c.key);
    const [avatar, main] = li.children;
    paintAvatar(avatar, c.name, c.group);
    const q = (sel) => main.querySelector(sel);
    q('.name').textContent = oneLine(c.name);
    // A tick next to a changed key would vouch for a key nobody compared: the tick is for the old one.
    q('.verified').hidden = !c.verified || c.keyChanged;
    q('.key-changed').hidden = !c.keyChanged;
    const last = S.last.get(c.key);
    q('.chat-time').textContent = last ? listStamp(last.ts) : '';
    let preview = '';
    if (c.gone) preview = 'You are no longer a member';
    else if (last) {
      const who = last.system ? '' : last.outgoing ? 'You: ' : c.group && last.from ? `${oneLine(last.from)}: ` : '';
      preview = who + oneLine(last.text);
    } else preview = c.group ? 'Group' : 'No messages yet';
    q('.preview').textContent = preview.length > 140 ? `${preview.slice(0, 140)}…` : preview;
    const unread = q('.unread');
    unread.textContent = String(c.unread);
    unread.hidden = c.unread <= 0;
    unread.setAttribute('aria-label', `${c.unread} unread`);
    total += Math.max(0, c.unread);
    li.tabIndex = c.key === tabKey ? 0 : -1;
    li.classList.toggle('active', c.key === S.open);
    li.classList.toggle('has-unread', c.unread > 0);
    li.classList.toggle('gone', c.gone);
    if (c.key === S.open) li.setAttribute('aria-current', 'true');
    else li.removeAttribute('aria-current');
    if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] ?? null);
  });
  $('chats-empty').hidden = !S.ready || chats.length > 0;
  document.title = total > 0 ? `(${total}) hush` : 'hush';
}

function renderConvHeader() {
  const key = S.open;
  const title = $('conv-title');
  const sub = $('conv-sub');
  const avatar = $('conv-avatar');
  const box = $('composer');
  const banner = $('key-change-banner');
  const bannerWasHidden = banner.hidden;
  let blocked = false;
  let gone = false;
  sub.classList.remove('warn');
  $('welcome').hidden = Boolean(key);
  $('messages').hidden = !key;
  $('composer-bar').hidden = !key;
  if (!key) {
    title.textContent = 'hush';
    sub.textContent = '';
    avatar.hidden = true;
    $('verify').hidden = true;
    $('members').hidden = true;
    banner.hidden = true;
  } else if (isGroupKey(key)) {
    const g = S.groups.get(key);
    title.textContent = oneLine(key);
    avatar.hidden = false;
    paintAvatar(avatar, key, true);
    gone = g ? g.member === false : false;
    const members = g && Array.isArray(g.members) ? g.members.length : 0;
    sub.textContent = gone
      ? `You are no longer a member${g.gone ? `: ${oneLine(g.gone)}` : ''}`
      : `${members} ${members === 1 ? 'member' : 'members'} · end-to-end encrypted (MLS)`;
    $('verify').hidden = true;
    $('members').hidden = false;
    banner.hidden = true;
  } else {
    const c = S.contacts.get(key);
    title.textContent = oneLine(key);
    avatar.hidden = false;
    paintAvatar(avatar, key, false);
    blocked = Boolean(c?.key_changed);
    sub.textContent = blocked
      ? 'Identity key changed'
      : c?.verified
        ? 'Verified ✓ · end-to-end encrypted'
        : 'Not verified · compare safety numbers';
    sub.classList.toggle('warn', blocked);
    $('verify').hidden = false;
    $('members').hidden = true;
    banner.hidden = !blocked;
    $('key-change-text').replaceChildren(
      h('strong', null, `${oneLine(key)}'s identity key changed. Sending is blocked.`),
      document.createTextNode(
        ' They may have reinstalled hush, or someone may be intercepting. Compare safety numbers, then accept the new key to send again.',
      ),
    );
  }
  if (bannerWasHidden && !banner.hidden) {
    // The banner takes room above the messages: keep the newest (under the new key) in view.
    const ol = $('messages');
    ol.scrollTop = ol.scrollHeight;
  }
  const disabled = !key || blocked || gone || S.sock === 'gone';
  box.disabled = disabled;
  $('send').disabled = disabled;
  box.placeholder = !key
    ? 'Message'
    : S.sock === 'gone'
      ? 'hush web is gone: open the new URL it printed'
      : blocked
        ? 'Sending is blocked: the key changed'
        : gone
          ? 'You are no longer a member of this group'
          : `Message ${oneLine(key)}`;
}

function stateLabel(state) {
  switch (state) {
    case 'queued':
      return 'Queued: waiting for the relay';
    case 'on relay':
      return 'On the relay: not yet delivered';
    case 'delivered':
      return 'Delivered';
    case 'failed':
      return 'Failed: it will not be delivered';
    default:
      return 'Received';
  }
}

function messageItem(m, isGroup) {
  const outgoing = m.from === null || m.from === undefined;
  const li = h('li', 'msg');
  li.dataset.id = m.id;
  li.dataset.outgoing = outgoing ? 'true' : 'false';
  if (m.key_changed) li.classList.add('key-changed-msg');
  const bubble = h('div', 'bubble');
  if (!outgoing) {
    const from = h('span', isGroup ? `from fc${colourOf(m.from)}` : 'from sr-only', oneLine(m.from));
    bubble.append(from);
  }
  const text = h('div', 'text');
  text.append(textNodes(m.text));
  bubble.append(text);
  const meta = h('div', 'meta');
  if (m.key_changed) {
    const flag = h('span', 'flag', 'KEY CHANGED');
    flag.title = 'This message came under an identity key you had not accepted';
    meta.append(flag);
  }
  const shown = outgoing ? m.sent_at : (m.received_at ?? m.sent_at);
  const time = h('time', 'time', timeOf(shown));
  time.dateTime = new Date(shown).toISOString();
  time.title = outgoing
    ? `Sent ${fullTimeOf(m.sent_at)}`
    : `Received ${fullTimeOf(shown)}; their clock said ${fullTimeOf(m.sent_at)}`;
  meta.append(time);
  const state = h('span', 'state');
  state.dataset.state = m.state;
  state.append(h('span', 'state-word', m.state));
  state.title = m.failure ? `${stateLabel(m.state)}\n${iso(m.failure)}` : stateLabel(m.state);
  if (!outgoing) state.classList.add('sr-only');
  meta.append(state);
  bubble.append(meta);
  li.append(bubble);
  return li;
}

/** A render asked for by notifications, not yet done: {stick}. */
let renderPending = null;

/**
 * Render the open chat soon, once for a burst of notifications (a peer sending hundreds of
 * messages must not make this tab rebuild the conversation hundreds of times).
 */
function scheduleMessages({ stick }) {
  if (renderPending) {
    renderPending.stick = renderPending.stick || Boolean(stick);
    return;
  }
  renderPending = { stick: Boolean(stick) };
  const run = () => {
    if (renderPending) renderMessages(renderPending);
  };
  requestAnimationFrame(run);
  setTimeout(run, 50);
}

function renderMessages({ stick }) {
  if (renderPending) {
    stick = stick || renderPending.stick;
    renderPending = null;
  }
  const ol = $('messages');
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 48;
  const key = S.open;
  const frag = document.createDocumentFragment();
  if (key) {
    const isGroup = isGroupKey(key);
    const msgs = S.messages;
    if (S.truncated) {
      const note = h('li', 'note older-hidden', 'Older messages are not shown.');
      frag.append(note);
    }
    const sys = (S.system.get(key) ?? []).slice().sort((a, b) => a.ts - b.ts);
    let si = 0;
    let lastDay = '';
    const dayMark = (li, ts) => {
      const d = dayKey(ts);
      if (d !== lastDay) {
        li.dataset.day = dayLabel(ts);
        lastDay = d;
      }
    };
    const pushSystem = (s) => {
      const li = h('li', s.warn ? 'system warn' : 'system');
      li.append(h('span', 'system-text', s.text));
      dayMark(li, s.ts);
      frag.append(li);
    };
    let prev = null;
    for (const m of msgs) {
      const ts = msgTime(m);
      while (si < sys.length && sys[si].ts <= ts) pushSystem(sys[si++]);
      const li = messageItem(m, isGroup);
      dayMark(li, ts);
      // Consecutive bubbles from the same sender within a few minutes sit closer together.
      if (prev && prev.from === m.from && !li.dataset.day && ts - msgTime(prev) < 5 * 60 * 1000) li.classList.add('cont');
      frag.append(li);
      prev = m;
    }
    while (si < sys.length) pushSystem(sys[si++]);
    if (!msgs.length && !sys.length) {
      frag.append(
        h(
          'li',
          'note',
          isGroup
            ? 'No messages yet. Messages in this group are end-to-end encrypted with MLS.'
            : 'No messages yet. Messages are end-to-end encrypted: only you and they can read them.',
        ),
      );
    }
  }
  ol.replaceChildren(frag);
  if (stick || atBottom) ol.scrollTop = ol.scrollHeight;
}

// ---------------------------------------------------------------------------------------------
// Errors

let errorTimer = 0;

/**
 * Show an error in #error. One string (an RpcError message: hush web's text, which may quote a
 * peer or the relay) is shown bidi-isolated as a whole; several parts are the page's own strings
 * and peer() nodes.
 */
function showError(...parts) {
  const box = $('error');
  const only = parts.length === 1 && typeof parts[0] === 'string';
  box.replaceChildren(...(only ? [peer(parts[0])] : parts.map((p) => (typeof p === 'string' ? document.createTextNode(p) : p))));
  box.classList.remove('faded');
  box.tabIndex = 0;
  clearTimeout(errorTimer);
  // The toast steps aside after a while; its text stays as "the last error" until replaced.
  errorTimer = setTimeout(() => {
    box.classList.add('faded');
    box.tabIndex = -1;
  }, 12000);
}

function clearError() {
  const box = $('error');
  box.textContent = '';
  box.classList.remove('faded');
  clearTimeout(errorTimer);
}

/** Show an error in a dialog's own line and in #error. */
function dialogError(dlg, message) {
  const line = dlg.querySelector('.dlg-error');
  if (line) line.replaceChildren(...(message ? [peer(message)] : []));
  if (message) showError(message);
}

// ---------------------------------------------------------------------------------------------
// Composer

const nativeAutosize = typeof CSS !== 'undefined' && CSS.supports?.('field-sizing', 'content');

function autosize() {
  if (nativeAutosize) return;
  const box = $('composer');
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight + 2, 12 * 16)}px`;
}

// ---------------------------------------------------------------------------------------------
// Dialogs

function openDialog(dlg) {
  dialogError(dlg, '');
  if (!dlg.open) dlg.showModal();
}

function closeDialog(dlg) {
  if (dlg.open) dlg.close();
}

function busy(button, on) {
  button.disabled = on;
  button.classList.toggle('busy', on);
}

async function submitAddContact() {
  const dlg = $('add-contact-dialog');
  const input = $('add-contact-name');
  const btn = $('add-contact-submit');
  const name = input.value.trim();
  if (!name) {
    dialogError(dlg, 'Type the name they registered on the relay.');
    input.focus();
    return;
  }
  busy(btn, true);
  dialogError(dlg, '');
  try {
    await call('add', { contact: name });
    await loadContacts();
    closeDialog(dlg);
    input.value = '';
    openChat(name);
  } catch (e) {
    dialogError(dlg, e.message);
  } finally {
    busy(btn, false);
  }
}

function parseNames(text) {
  return text
    .split(/[,\s]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function renderGroupSuggest() {
  const box = $('group-suggest');
  const chosen = new Set(parseNames($('group-members').value));
  const frag = document.createDocumentFragment();
  for (const c of S.contacts.values()) {
    const b = h('button', chosen.has(c.name) ? 'chip on' : 'chip', oneLine(c.name));
    b.type = 'button';
    b.disabled = Boolean(c.key_changed);
    if (c.key_changed) b.title = 'Key changed: accept the new key first';
    b.setAttribute('aria-pressed', chosen.has(c.name) ? 'true' : 'false');
    b.addEventListener('click', () => {
      const names = parseNames($('group-members').value);
      const next = names.includes(c.name) ? names.filter((n) => n !== c.name) : [...names, c.name];
      $('group-members').value = next.join(', ');
      renderGroupSuggest();
    });
    frag.append(b);
  }
  box.replaceChildren(frag);
  box.hidden = S.contacts.size === 0;
}

async function submitNewGroup() {
  const dlg = $('new-group-dialog');
  const name = groupName($('group-name').value.trim());
  const members = parseNames($('group-members').value);
  const btn = $('group-create-submit');
  if (!name) {
    dialogError(dlg, 'Give the group a name.');
    $('group-name').focus();
    return;
  }
  busy(btn, true);
  dialogError(dlg, '');
  try {
    const g = await call('group.create', { group: name, members });
    await loadGroups();
    closeDialog(dlg);
    $('group-name').value = '';
    $('group-members').value = '';
    openChat(`#${groupName(g?.group ?? name)}`);
  } catch (e) {
    dialogError(dlg, e.message);
    loadGroups().catch(() => {});
  } finally {
    busy(btn, false);
  }
}

function drawQr(canvas, qr) {
  const rows = qr && Array.isArray(qr.rows) ? qr.rows : null;
  const size = rows ? Number(qr.size) || rows.length : 0;
  if (!rows || !size || size > 200) {
    canvas.hidden = true;
    return;
  }
  const quiet = 4;
  const scale = Math.max(2, Math.floor(480 / (size + 2 * quiet)));
  const px = (size + 2 * quiet) * scale;
  canvas.width = px;
  canvas.height = px;
  const ctx = canvas.getContext('2d');
  if (!ctx) {
    canvas.hidden = true;
    return;
  }
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, px, px);
  ctx.fillStyle = '#000000';
  rows.forEach((row, y) => {
    const line = String(row);
    for (let x = 0; x < line.length && x < size; x += 1) {
      if (line[x] === '1') ctx.fillRect((x + quiet) * scale, (y + quiet) * scale, scale, scale);
    }
  });
  canvas.hidden = false;
}

/** `note`: an extra line shown first in the status (e.g. the number changed under the dialog). */
function renderSafety(v, note = '') {
  const box = $('safety-number');
  const groups = String(v.grouped ?? v.safety_number ?? '')
    .split(/\s+/)
    .filter(Boolean);
  const digits = groups.length === 12 ? groups : (String(v.safety_number ?? '').match(/\d{5}/g) ?? []);
  box.replaceChildren(...digits.map((d) => h('span', 'digits', d)));
  // Exactly the digits on screen: confirming sends them, so hush web marks verified only the
  // key whose number the user compared.
  S.safetyShown = digits.join('');
  drawQr($('safety-qr'), v.qr);
  const status = $('safety-status');
  const name = oneLine(v.contact ?? S.dialogChat);
  status.dataset.verified = v.verified ? 'true' : 'false';
  status.dataset.keyChanged = v.key_changed ? 'true' : 'false';
  const text = v.key_changed
    ? `${name}'s key changed: this number is for the new key, which you have not accepted yet.`
    : v.verified
      ? `Verified: you confirmed ${name}'s safety number.`
      : `Not verified: compare this number with ${name} before marking it verified.`;
  status.replaceChildren();
  status.classList.toggle('changed', Boolean(note));
  if (note) status.append(h('strong', 'safety-changed', note), h('br'));
  status.append(document.createTextNode(text));
  const confirm = $('confirm-verified');
  confirm.disabled = Boolean(v.verified);
  confirm.textContent = v.verified ? 'Verified ✓' : 'Mark as verified';
  $('safety-title').textContent = `Safety number with ${name}`;
}

async function openSafety(key) {
  const dlg = $('safety-dialog');
  S.dialogChat = key;
  $('safety-number').replaceChildren();
  $('safety-qr').hidden = true;
  $('safety-status').textContent = 'Loading…';
  $('safety-title').textContent = `Safety number with ${oneLine(key)}`;
  S.safetyShown = null;
  openDialog(dlg);
  try {
    renderSafety(await call('verify', { contact: key }));
  } catch (e) {
    $('safety-status').textContent = '';
    dialogError(dlg, e.message);
  }
}

async function confirmVerified() {
  const dlg = $('safety-dialog');
  const key = S.dialogChat;
  if (!key) return;
  const btn = $('confirm-verified');
  const shown = S.safetyShown;
  if (!shown || !/^\d{60}$/.test(shown)) return;
  busy(btn, true);
  try {
    const v = await call('verify', { contact: key, confirm: true, safety_number: shown });
    renderSafety(v);
    await loadContacts();
  } catch (e) {
    if (e.kind === 'safety_number_changed' || e.kind === 'key_changed') {
      // The key changed after this number was shown: show the current one; nothing was verified.
      dialogError(dlg, '');
      try {
        const v = await call('verify', { contact: key });
        if (S.dialogChat === key) {
          renderSafety(
            v,
            'The safety number changed while this window was open: nothing was marked verified. Compare the new number below.',
          );
        }
      } catch (e2) {
        dialogError(dlg, e2.message);
      }
      loadContacts().catch(() => {});
    } else {
      dialogError(dlg, e.message);
      btn.disabled = false;
    }
  } finally {
    btn.classList.remove('busy');
  }
}

const MEMBER_STATE = {
  you: 'you',
  verified: 'verified',
  known: 'not verified',
  key_changed: 'KEY CHANGED',
  not_a_contact: 'not a contact',
};

function renderMembers(g) {
  const ul = $('member-list');
  const me = S.me?.name;
  const members = Array.isArray(g.members) ? g.members.slice() : [];
  members.sort((a, b) => (a.state === 'you' ? -1 : b.state === 'you' ? 1 : String(a.name).localeCompare(String(b.name))));
  const frag = document.createDocumentFragment();
  for (const m of members) {
    const li = h('li', 'member');
    li.dataset.member = m.name;
    const av = h('span', 'avatar small');
    paintAvatar(av, m.name, false);
    av.classList.add('small');
    av.setAttribute('aria-hidden', 'true');
    const info = h('div', 'member-info');
    const name = h('span', 'member-name', oneLine(m.name));
    const state = h('span', `member-state s-${String(m.state).replace(/[^a-z_]/g, '')}`, MEMBER_STATE[m.state] ?? oneLine(m.state));
    state.title = `fingerprint ${iso(m.fingerprint)}`;
    info.append(name, state);
    li.append(av, info);
    if (m.state !== 'you' && m.name !== me && g.member !== false) {
      const rm = h('button', 'btn ghost small remove-member', 'Remove');
      rm.type = 'button';
      rm.setAttribute('aria-label', `Remove ${oneLine(m.name)}`);
      rm.addEventListener('click', () => removeMember(m.name, rm));
      li.append(rm);
    }
    frag.append(li);
  }
  ul.replaceChildren(frag);
  const gone = g.member === false;
  $('members-note').textContent = gone
    ? `You are no longer a member${g.gone ? `: ${oneLine(g.gone)}` : ''}.`
    : `Epoch ${g.epoch ?? '?'} · every member in the same epoch sees the code ${oneLine(String(g.epoch_authenticator ?? '').slice(0, 16))}…`;
  $('member-add-name').disabled = gone;
  $('member-add').disabled = gone;
  $('leave-group').disabled = gone;
}

async function loadMembers() {
  const key = S.dialogChat;
  const g = await call('group.members', { group: groupName(key) });
  if (S.dialogChat === key) renderMembers(g);
  return g;
}

async function openMembers(key) {
  const dlg = $('members-dialog');
  S.dialogChat = key;
  $('members-title').textContent = `Members of ${oneLine(key)}`;
  $('member-list').replaceChildren();
  openDialog(dlg);
  try {
    await loadMembers();
  } catch (e) {
    dialogError(dlg, e.message);
  }
}

async function groupAction(btn, method, params, after) {
  const dlg = $('members-dialog');
  busy(btn, true);
  dialogError(dlg, '');
  try {
    const g = await call(method, params);
    if (g && typeof g === 'object' && Array.isArray(g.members)) {
      renderMembers(g);
      // Apply the answer at once (a left group locks the composer now, not after group.list).
      if (typeof g.group === 'string') {
        S.groups.set(`#${groupName(g.group)}`, g);
        renderChats();
        renderConvHeader();
      }
    } else await loadMembers();
    await loadGroups();
    if (after) after();
  } catch (e) {
    dialogError(dlg, e.message);
  } finally {
    if (btn.isConnected) busy(btn, false);
    // A disabled state set by renderMembers (group left) wins over re-enabling.
    const g = S.groups.get(S.dialogChat ?? '');
    if (g && g.member === false) {
      $('member-add').disabled = true;
      $('leave-group').disabled = true;
    }
  }
}

function removeMember(name, btn) {
  groupAction(btn, 'group.remove', { group: groupName(S.dialogChat), members: [name] });
}

function addMember() {
  const names = parseNames($('member-add-name').value);
  if (!names.length) {
    dialogError($('members-dialog'), 'Type a contact name to add.');
    $('member-add-name').focus();
    return;
  }
  groupAction($('member-add'), 'group.add', { group: groupName(S.dialogChat), members: names }, () => {
    $('member-add-name').value = '';
  });
}

function leaveGroup() {
  const key = S.dialogChat;
  groupAction($('leave-group'), 'group.leave', { group: groupName(key) }, () => {
    if (S.open === key) renderConvHeader();
  });
}

async function acceptKey() {
  const key = S.open;
  if (!key || isGroupKey(key)) return;
  const btn = $('accept-key');
  busy(btn, true);
  try {
    await call('trust', { contact: key });
    await loadContacts();
    if (S.open === key && !$('composer').disabled) $('composer').focus();
  } catch (e) {
    showError(e.message);
  } finally {
    busy(btn, false);
  }
}

// ---------------------------------------------------------------------------------------------
// Wiring

function onEnter(input, action) {
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.isComposing) {
      e.preventDefault();
      action();
    }
  });
}

function wire() {
  const box = $('composer');
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      sendComposer();
    }
  });
  box.addEventListener('input', autosize);
  $('send').addEventListener('click', () => {
    sendComposer();
    box.focus();
  });

  $('back').addEventListener('click', () => {
    const key = S.open;
    closeChat();
    if (key) chatRows.get(key)?.focus();
  });

  $('add-contact').addEventListener('click', () => {
    openDialog($('add-contact-dialog'));
    $('add-contact-name').focus();
  });
  $('add-contact-submit').addEventListener('click', submitAddContact);
  onEnter($('add-contact-name'), submitAddContact);

  $('new-group').addEventListener('click', () => {
    renderGroupSuggest();
    openDialog($('new-group-dialog'));
    $('group-name').focus();
  });
  $('group-members').addEventListener('input', renderGroupSuggest);
  $('group-create-submit').addEventListener('click', submitNewGroup);
  onEnter($('group-name'), () => $('group-members').focus());
  onEnter($('group-members'), submitNewGroup);

  $('verify').addEventListener('click', () => S.open && openSafety(S.open));
  $('key-compare').addEventListener('click', () => S.open && openSafety(S.open));
  $('confirm-verified').addEventListener('click', confirmVerified);
  $('accept-key').addEventListener('click', acceptKey);

  $('members').addEventListener('click', () => S.open && openMembers(S.open));
  $('member-add').addEventListener('click', addMember);
  onEnter($('member-add-name'), addMember);
  $('leave-group').addEventListener('click', leaveGroup);

  for (const dlg of document.querySelectorAll('dialog')) {
    for (const b of dlg.querySelectorAll('.dlg-close, .dlg-cancel')) b.addEventListener('click', () => closeDialog(dlg));
    // A click on the backdrop (the dialog box itself, outside its content) closes it.
    dlg.addEventListener('click', (e) => {
      if (e.target === dlg) closeDialog(dlg);
    });
    // Closing returns focus to what had it before (the dialog element does that itself).
    dlg.addEventListener('close', () => {
      if (dlg.id === 'safety-dialog' || dlg.id === 'members-dialog') S.dialogChat = null;
    });
  }

  const err = $('error');
  err.addEventListener('click', clearError);
  err.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === 'Escape') clearError();
  });

  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !document.querySelector('dialog[open]')) {
      if (err.textContent) clearError();
      else if (S.open && narrow()) $('back').click();
    }
  });

  // Back in view: the open chat's unread messages are now read.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && S.open && S.ready) markRead();
  });
  // Local times and "Today" labels move on; refresh the list stamps now and then.
  setInterval(() => {
    if (S.ready) renderChats();
  }, 60 * 1000);
}

function takeToken() {
  const m = /(?:^#|&)token=([0-9a-fA-F]{16,128})(?:&|$)/.exec(location.hash);
  if (m) {
    try {
      sessionStorage.setItem(TOKEN_KEY, m[1]);
    } catch {
      // Storage refused (private mode): the token still works until the page is reloaded.
    }
    window.history.replaceState(null, '', location.pathname + location.search);
    return { token: m[1], fresh: true };
  }
  try {
    return { token: sessionStorage.getItem(TOKEN_KEY), fresh: false };
  } catch {
    return { token: null, fresh: false };
  }
}

/** The pinned run: forgotten for a URL just printed by hush web (its first hello is pinned afresh). */
function pinFor(fresh) {
  try {
    if (fresh) sessionStorage.removeItem(INSTANCE_KEY);
    S.instance = fresh ? null : sessionStorage.getItem(INSTANCE_KEY);
  } catch {
    if (fresh) S.instance = null;
  }
}

function start() {
  wire();
  renderMe();
  const taken = takeToken();
  S.token = taken.token;
  pinFor(taken.fresh);
  renderConvHeader();
  renderChats();
  renderConn();
  // Pasting a new URL (hush web restarted) into this tab changes only the fragment: no reload.
  window.addEventListener('hashchange', () => {
    const { token, fresh } = takeToken();
    if (!token || (token === S.token && S.sock === 'open')) return;
    clearTimeout(S.helloTimer);
    pinFor(fresh);
    S.token = token;
    document.body.classList.remove('no-token');
    $('welcome-text').textContent = WELCOME;
    S.attempts = 0;
    const old = S.ws;
    S.ws = null;
    old?.close();
    for (const w of S.pending.values()) w.reject(new RpcError('hush web is not reachable', 0, 'disconnected'));
    S.pending.clear();
    S.sock = 'connecting';
    renderConn();
    connect();
  });
  if (!S.token) {
    $('welcome-text').textContent = 'This page has no access token: open the URL hush web printed in your terminal.';
    document.body.classList.add('no-token');
    return;
  }
  connect();
}

const WELCOME = $('welcome-text').textContent;

start();
