// Plumbing for the browser scenarios (scenarios.mjs): the control channel to the Rust test that
// owns every process, a scenario runner, polling waits with readable failures, and the
// watchers that catch console errors, CSP violations and requests leaving the machine.

import readline from 'node:readline';

/** Hosts a request may go to: everything the pages load or open must stay on this machine. */
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Prefix of the lines asking the Rust test (web_browser.rs) to act on a process. */
const CONTROL_PREFIX = '@@hush-control ';

export function log(line) {
  process.stdout.write(`${line}\n`);
}

// The Rust test answers each control line with one JSON line on our stdin:
// {"id": N, "result": {...}} or {"id": N, "error": "why"}.
const pending = new Map();
let nextId = 1;
const replies = readline.createInterface({ input: process.stdin });
replies.on('line', (line) => {
  let reply;
  try {
    reply = JSON.parse(line);
  } catch {
    log(`harness: unreadable control reply: ${line}`);
    return;
  }
  const waiter = pending.get(reply.id);
  if (!waiter) return;
  pending.delete(reply.id);
  if (reply.error) waiter.reject(new Error(`control ${waiter.cmd}: ${reply.error}`));
  else waiter.resolve(reply.result ?? {});
});

/**
 * Ask the Rust test to do something to a process it owns (start or stop `hush web` or the
 * relay, give a name a new identity). The test keeps the processes so that they die with it,
 * whatever happens to this script.
 */
export function control(cmd, args = {}, timeoutMs = 60_000) {
  const id = nextId++;
  return withTimeout(
    new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject, cmd });
      process.stdout.write(`${CONTROL_PREFIX}${JSON.stringify({ id, cmd, ...args })}\n`);
    }),
    timeoutMs,
    `control ${cmd}`,
  );
}

export function closeControl() {
  replies.close();
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Poll `probe` until it returns something truthy (returned), or fail saying what was awaited
 * and what was last seen: a failure names the selector, the expectation and the actual value.
 */
export async function until(probe, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = `error: ${e.message.split('\n')[0]}`;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last)}`);
    }
    await sleep(50);
  }
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

/**
 * Runs named scenarios in order. Each is a test of its own: it passes or fails with the reason;
 * one that needs a failed scenario's state is reported as not run (and counts as a failure).
 */
export class Runner {
  constructor() {
    this.results = new Map();
    this.passed = new Map();
    /** Called after a failure, for more context (e.g. what the pages' #error says). */
    this.onFailure = async () => [];
  }

  /** `name` starts with the scenario's letter and a colon (`b: ...`); `needs` lists letters. */
  async run(name, { needs = [], timeout = 30_000 }, body) {
    const letter = name.split(':')[0];
    const missing = needs.filter((n) => this.passed.get(n) !== true);
    const record = (result) => {
      this.results.set(name, result);
      this.passed.set(letter, result === 'ok');
    };
    if (missing.length > 0) {
      record('not run');
      log(`web scenario ${name}: NOT RUN (needs ${missing.join(', ')})`);
      return;
    }
    const start = Date.now();
    try {
      await withTimeout(body(), timeout, `scenario ${name}`);
      record('ok');
      log(`web scenario ${name}: ok (${Date.now() - start} ms)`);
    } catch (e) {
      record('failed');
      log(`web scenario ${name}: FAILED after ${Date.now() - start} ms: ${e.stack ?? e}`);
      for (const line of await this.onFailure().catch((why) => [`(no context: ${why})`])) log(`  ${line}`);
    }
  }

  get failed() {
    return [...this.results].filter(([, r]) => r !== 'ok').map(([n, r]) => `${n} (${r})`);
  }
}

/**
 * Everything the pages did that they must not: requests or sockets to another machine,
 * console errors, uncaught exceptions. Filled by listeners for the whole run.
 */
export class Watch {
  constructor() {
    this.outside = [];
    this.problems = [];
    this.requests = 0;
    /** Every `history` request the pages sent: {who, params, at}. */
    this.history = [];
  }

  /** Every request of every page in `context`; and the CSP violation recorder in its pages. */
  async context(context) {
    context.on('request', (request) => {
      this.requests += 1;
      this.noteUrl(request.url());
    });
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI}`);
      });
    });
  }

  /** Console errors and uncaught exceptions of `page`, under the label `who`. */
  page(page, who) {
    page.on('console', (message) => {
      if (message.type() === 'error') {
        const where = message.location()?.url ?? '';
        this.problems.push(`${who}: console error: ${message.text()} (${where})`);
      }
    });
    page.on('pageerror', (error) => this.problems.push(`${who}: uncaught: ${error.message}`));
    page.on('websocket', (socket) => {
      this.noteUrl(socket.url());
      socket.on('framesent', ({ payload }) => this.noteFrame(who, payload));
    });
  }

  /** A history read must be bounded (`limit` 1..500): a peer can make a history huge. */
  noteFrame(who, payload) {
    let msg;
    try {
      msg = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
    } catch {
      this.problems.push(`${who}: sent a frame that is not JSON`);
      return;
    }
    if (msg?.method !== 'history') return;
    const params = msg.params ?? {};
    this.history.push({ who, params, at: Date.now() });
    const limit = params.limit;
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
      this.problems.push(`${who}: unbounded history read ${JSON.stringify(params)}`);
    }
  }

  noteUrl(url) {
    let parsed;
    try {
      parsed = new URL(url);
    } catch {
      this.outside.push(url);
      return;
    }
    if (['data:', 'blob:', 'about:'].includes(parsed.protocol)) return;
    if (!LOOPBACK.has(parsed.hostname)) this.outside.push(url);
  }

  /** CSP violations recorded so far in `page` (call before it closes). */
  static async csp(page, who) {
    const seen = await page.evaluate(() => window.__cspViolations ?? []);
    return seen.map((v) => `${who}: CSP violation: ${v}`);
  }

  assertClean(extra = []) {
    check(this.outside.length === 0, `requests left the machine: ${this.outside.join(', ')}`);
    const problems = [...this.problems, ...extra];
    check(problems.length === 0, `the pages reported problems:\n  ${problems.join('\n  ')}`);
  }
}
