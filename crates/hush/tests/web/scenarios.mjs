// The browser scenarios of `hush web`, in one real Chromium with a browser context per user.
// Run by crates/hush/tests/web_browser.rs, which owns the relay and the `hush web` processes
// and acts on them when asked over the control channel (harness.mjs). Exit status 0 only when
// every scenario passed. Env: HUSH_CHROMIUM (the browser), HUSH_WEB_SCREENSHOTS (optional
// directory for the screenshots of the main views).

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { Runner, Watch, check, closeControl, control, log, sleep, until } from './harness.mjs';
import {
  canvasInk,
  chat,
  connState,
  connected,
  enabled,
  escapeCloses,
  firstContentfulPaint,
  openChat,
  openDialog,
  send,
  tokenOf,
  waitMessage,
} from './page.mjs';
import { originAndToken } from './origin.mjs';
import { squat } from './squat.mjs';

const VIEWPORT = { width: 1280, height: 800 };
const SHOTS = process.env.HUSH_WEB_SCREENSHOTS || null;
const LATENCY_MESSAGES = 100;

const watch = new Watch();
const runner = new Runner();
const browser = await chromium.launch({
  executablePath: process.env.HUSH_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
});
if (SHOTS) mkdirSync(SHOTS, { recursive: true });

async function screenshot(page, name) {
  if (!SHOTS) return;
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
  log(`web screenshot: ${path.join(SHOTS, `${name}.png`)}`);
}

async function newContext() {
  const context = await browser.newContext({ viewport: VIEWPORT });
  context.setDefaultTimeout(10_000);
  await watch.context(context);
  return context;
}

/** The users: a browser context each, the current page, and their `hush web`. */
const users = {};

/**
 * Start NAME's `hush web` (through the Rust test), open the URL it printed in a new page of
 * `context`, and wait until the page is usable. Returns timings for the figures.
 */
async function openUser(name, context, ready = async () => {}) {
  const web = await control('start-web', { name });
  const page = await context.newPage();
  watch.page(page, name);
  await page.goto(web.url);
  await connected(page);
  await ready(page);
  const usableAt = Date.now();
  users[name] = { context, page, url: web.url, token: tokenOf(web.url) };
  return {
    page,
    spawnToUrl: web.url_at_ms - web.spawned_at_ms,
    spawnToUsable: usableAt - web.spawned_at_ms,
    fcp: await firstContentfulPaint(page),
  };
}

/** Close NAME's page (after collecting its CSP violations) and stop its `hush web`. */
async function closeUser(name) {
  const { page } = users[name];
  watch.problems.push(...(await Watch.csp(page, name)));
  await page.close();
  await control('stop-web', { name });
}

// What the pages themselves said when a scenario failed.
runner.onFailure = async () => {
  const lines = [];
  for (const [name, user] of Object.entries(users)) {
    if (user.page.isClosed()) continue;
    const seen = await user.page.evaluate(() => ({
      error: document.getElementById('error')?.textContent ?? null,
      conn: document.getElementById('conn')?.dataset.state ?? null,
      title: document.getElementById('conv-title')?.textContent ?? null,
    }));
    lines.push(`${name}'s page: #error ${JSON.stringify(seen.error)}, #conn ${seen.conn}, #conv-title ${JSON.stringify(seen.title)}`);
  }
  return lines;
};

const A = () => users.alice.page;
const B = () => users.bob.page;

await runner.run('a: pages load, connect, and stay on this machine', { timeout: 45_000 }, async () => {
  const alice = await newContext();
  const bob = await newContext();
  for (const [name, context] of [
    ['alice', alice],
    ['bob', bob],
  ]) {
    const t = await openUser(name, context);
    log(`web figure: ${name}: hush web spawn to URL line = ${t.spawnToUrl} ms`);
    log(`web figure: ${name}: first-contentful-paint = ${t.fcp?.toFixed(0)} ms`);
    const page = users[name].page;
    await until(
      async () => ((await page.locator('#me').textContent()) ?? '').includes(name),
      `#me to show ${name}`,
    );
    // The token must not stay in the address bar (history, screenshots, shoulder surfing).
    check(!page.url().includes(users[name].token), `${name}: the token is still in location: ${page.url()}`);
  }
  check(watch.requests >= 6, `expected the pages' requests to be seen, saw ${watch.requests}`);
  watch.assertClean([...(await Watch.csp(A(), 'alice')), ...(await Watch.csp(B(), 'bob'))]);
});

const FIRST = 'hello bob,\nthis is line two';
await runner.run('b: add a contact, multi-line message, unread, delivered, reply', { needs: ['a'] }, async () => {
  const a = A();
  const b = B();
  await openDialog(a, '#add-contact', '#add-contact-dialog');
  await a.locator('#add-contact-name').fill('bob');
  await a.locator('#add-contact-submit').click();
  await chat(a, 'bob').waitFor({ state: 'visible', timeout: 15_000 });
  await a.locator('#add-contact-dialog').waitFor({ state: 'hidden' });
  await openChat(a, 'bob');

  const composer = a.locator('#composer');
  await until(() => enabled(composer), '#composer enabled in an open conversation');
  await composer.click();
  await a.keyboard.type('hello bob,');
  await a.keyboard.press('Shift+Enter');
  await a.keyboard.type('this is line two');
  await a.keyboard.press('Enter');
  const mine = await waitMessage(a, FIRST, "alice's own message shown");
  check(mine.outgoing === 'true', `alice's message: data-outgoing expected "true", got ${mine.outgoing}`);
  check(/^[0-9a-f]{32}$/.test(mine.id ?? ''), `alice's message: data-id expected 32 hex digits, got ${mine.id}`);

  const unread = chat(b, 'alice').locator('.unread');
  await unread.waitFor({ state: 'visible', timeout: 15_000 });
  await until(async () => (await unread.textContent()).trim() === '1', "bob's #chats li[data-chat=alice] .unread = 1");
  await openChat(b, 'alice');
  const theirs = await waitMessage(b, FIRST, 'bob sees the exact multi-line text');
  check(theirs.outgoing === 'false', `bob's copy: data-outgoing expected "false", got ${theirs.outgoing}`);
  check(theirs.id === mine.id, `the message has id ${mine.id} at alice and ${theirs.id} at bob`);
  check(theirs.state === 'received', `bob's copy: .state expected received, got ${theirs.state}`);
  await unread.waitFor({ state: 'hidden' }).catch(() => {
    throw new Error('.unread still shown after bob opened the conversation (history mark_read)');
  });
  await waitMessage(a, FIRST, "alice's message .state delivered", (m) => m.state === 'delivered');

  await send(b, 'hi alice');
  const reply = await waitMessage(a, 'hi alice', "bob's reply at alice");
  check(reply.outgoing === 'false', `the reply at alice: data-outgoing expected "false", got ${reply.outgoing}`);
  await screenshot(a, 'conversation');
});

await runner.run('c: safety numbers match, QR drawn, confirm marks verified', { needs: ['b'] }, async () => {
  const numbers = {};
  for (const [name, page, peer] of [
    ['alice', A(), 'bob'],
    ['bob', B(), 'alice'],
  ]) {
    // bob uses the keyboard: Enter on the focused #chats entry opens it.
    await openChat(page, peer, { keyboard: name === 'bob' });
    await openDialog(page, '#verify', '#safety-dialog');
    const digits = page.locator('#safety-number span.digits');
    await until(async () => (await digits.count()) === 12, `${name}: 12 #safety-number span.digits`);
    numbers[name] = (await digits.allTextContents()).map((d) => d.trim());
    for (const group of numbers[name]) check(/^\d{5}$/.test(group), `${name}: a digits group is ${JSON.stringify(group)}`);
    const ink = await until(async () => {
      const seen = await canvasInk(page, '#safety-qr');
      return seen && seen.dark > 0 && seen;
    }, `${name}: canvas#safety-qr drawn`);
    const share = ink.dark / (ink.dark + ink.light);
    check(share > 0.1 && share < 0.9, `${name}: QR canvas ${JSON.stringify(ink)} is not a QR code (dark share ${share})`);
  }
  check(
    numbers.alice.join(' ') === numbers.bob.join(' '),
    `safety numbers differ: alice ${numbers.alice.join(' ')} / bob ${numbers.bob.join(' ')}`,
  );
  await screenshot(A(), 'safety-number');
  const verified = chat(A(), 'bob').locator('.verified');
  check(!(await verified.isVisible()), 'alice: li[data-chat=bob] .verified shown before confirming');
  await A().locator('#confirm-verified').click();
  await verified.waitFor({ state: 'visible' }).catch(() => {
    throw new Error('alice: li[data-chat=bob] .verified not shown after #confirm-verified');
  });
  await escapeCloses(A(), '#safety-dialog');
  await escapeCloses(B(), '#safety-dialog');
});

const HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"><b>bold</b>';
await runner.run('d: hostile text is shown as text, never markup', { needs: ['b'] }, async () => {
  await send(A(), HOSTILE);
  await waitMessage(B(), HOSTILE, 'bob sees the hostile text literally');
  await waitMessage(A(), HOSTILE, 'alice sees her hostile text literally');
  await sleep(500); // an injected <img src=x> would have failed to load and run onerror by now
  for (const [name, page] of [
    ['alice', A()],
    ['bob', B()],
  ]) {
    const found = await page.evaluate(() => ({
      pwned: typeof window.__pwned,
      elements: document.querySelectorAll('#messages img, #messages b, #messages script').length,
      handlers: document.querySelectorAll('[onerror]').length,
      inlineScripts: document.querySelectorAll('script:not([src])').length,
    }));
    check(found.pwned === 'undefined', `${name}: window.__pwned is ${found.pwned}: the text ran as script`);
    check(found.elements === 0, `${name}: ${found.elements} img/b/script elements inside #messages`);
    check(found.handlers === 0 && found.inlineScripts === 0, `${name}: markup from the text in the DOM: ${JSON.stringify(found)}`);
  }
});

await runner.run('g: a group: create, message with sender, members', { needs: ['b'] }, async () => {
  const a = A();
  const b = B();
  await openDialog(a, '#new-group', '#new-group-dialog');
  await a.locator('#group-name').fill('team');
  await a.locator('#group-members').fill('bob');
  await a.locator('#group-create-submit').click();
  await chat(a, '#team').waitFor({ state: 'visible', timeout: 15_000 });
  await openChat(a, '#team');
  await send(a, 'hello team');
  await waitMessage(a, 'hello team', "alice's group message shown");

  await chat(b, '#team').waitFor({ state: 'visible', timeout: 15_000 });
  await openChat(b, '#team');
  const got = await waitMessage(b, 'hello team', "bob sees alice's group message");
  check((got.from ?? '').includes('alice'), `bob's group message .from expected alice, got ${JSON.stringify(got.from)}`);

  await openDialog(a, '#members', '#members-dialog');
  for (const member of ['alice', 'bob']) {
    await a
      .locator(`#member-list li[data-member="${member}"]`)
      .waitFor({ state: 'visible' })
      .catch(() => {
        throw new Error(`#member-list li[data-member=${member}] not shown in alice's members dialog`);
      });
  }
  await screenshot(a, 'group-members');
  await escapeCloses(a, '#members-dialog');
});

await runner.run('f: origin and token guard the socket', { needs: ['a'] }, async () => {
  // Not watched: the refused sockets are logged as console errors, as they should be.
  const context = await browser.newContext({ viewport: VIEWPORT });
  try {
    await originAndToken(context, users.alice);
  } finally {
    await context.close();
  }
});

await runner.run('i: figures: message latency over 100 messages', { needs: ['b'], timeout: 60_000 }, async () => {
  const a = A();
  const b = B();
  await openChat(a, 'bob');
  await openChat(b, 'alice');
  await a.evaluate(() => {
    window.__enterAt = new Map();
    document.addEventListener(
      'keydown',
      (e) => {
        if (e.target?.id === 'composer' && e.key === 'Enter' && !e.shiftKey) {
          window.__enterAt.set(e.target.value, Date.now());
        }
      },
      true,
    );
  });
  await b.evaluate(() => {
    window.__shownAt = new Map();
    const scan = () => {
      for (const el of document.querySelectorAll('#messages li.msg .text')) {
        const text = el.textContent;
        if (text.startsWith('latency ') && !window.__shownAt.has(text)) window.__shownAt.set(text, Date.now());
      }
    };
    new MutationObserver(scan).observe(document.body, { childList: true, subtree: true, characterData: true });
  });
  const latencies = [];
  const readsFrom = watch.history.length;
  for (let i = 0; i < LATENCY_MESSAGES; i += 1) {
    const text = `latency ${i}`;
    await send(a, text);
    await b.waitForFunction((t) => window.__shownAt.has(t), text, { timeout: 10_000 });
    const [enter, shown] = await Promise.all([
      a.evaluate((t) => window.__enterAt.get(t), text),
      b.evaluate((t) => window.__shownAt.get(t), text),
    ]);
    check(typeof enter === 'number', `alice's page saw no Enter keydown for ${text}`);
    latencies.push(shown - enter);
  }
  const slowest = latencies
    .map((ms, i) => ({ i, ms }))
    .sort((x, y) => y.ms - x.ms)
    .slice(0, 5)
    .map(({ i, ms }) => `#${i} ${ms} ms`);
  log(`web figure: message latency slowest: ${slowest.join(', ')}`);
  latencies.sort((x, y) => x - y);
  const at = (q) => latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)];
  const n = latencies.length;
  log(`web figure: message latency p50 = ${at(0.5)} ms over ${n}`);
  log(`web figure: message latency p99 = ${at(0.99)} ms over ${n}`);
  log(`web figure: message latency max = ${latencies[n - 1]} ms over ${n}`);
  check(at(0.99) < 2_000, `message latency p99 ${at(0.99)} ms is not under 2 s`);
  // bob has the chat open: each incoming message is added as it comes and marked read with a
  // one-message read, never by re-reading the conversation.
  const bobReads = watch.history.slice(readsFrom).filter((r) => r.who === 'bob');
  const big = bobReads.filter((r) => r.params.limit > 1);
  log(`web figure: bob's history reads over ${LATENCY_MESSAGES} incoming messages: ${bobReads.length}, ${big.length} with limit > 1`);
  check(big.length <= 2, `bob re-read the open conversation ${big.length} times: ${JSON.stringify(big.slice(0, 3).map((r) => r.params))}`);
  check(
    bobReads.every((r) => r.params.limit > 1 || r.params.mark_read === true),
    "a limit-1 read of bob's that does not mark read",
  );
});

const LONG = 520;
await runner.run('l: a long conversation opens with its newest 500 messages only', { needs: ['g'], timeout: 90_000 }, async () => {
  const a = A();
  await openChat(a, '#team');
  const started = Date.now();
  // bob sends LONG messages over a socket of his own (the page's origin, his token): faster
  // than typing them, and the same requests the page makes.
  const sent = await B().evaluate(
    async ({ token, count }) => {
      const ws = new WebSocket(`ws://${location.host}/api/ws?token=${token}`);
      const answers = new Map();
      let hello = null;
      await new Promise((resolve, reject) => {
        ws.onerror = () => reject(new Error('socket error'));
        ws.onmessage = (e) => {
          const msg = JSON.parse(e.data);
          if (msg.method === 'hello') {
            hello = msg;
            resolve();
          } else if (msg.id !== undefined) answers.set(msg.id, msg);
        };
      });
      for (let i = 0; i < count; i += 1) {
        ws.send(JSON.stringify({ jsonrpc: '2.0', id: i + 1, method: 'send', params: { to: 'alice', text: `long ${i}` } }));
      }
      const deadline = Date.now() + 60_000;
      while (answers.size < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      ws.close();
      const errors = [...answers.values()].filter((m) => m.error).map((m) => m.error.message);
      return { hello: Boolean(hello), answered: answers.size, errors: errors.slice(0, 3) };
    },
    { token: users.bob.token, count: LONG },
  );
  check(sent.hello && sent.answered === LONG && sent.errors.length === 0, `bob's sends: ${JSON.stringify(sent)}`);
  const sentAt = Date.now();
  await until(
    async () => ((await chat(a, 'bob').locator('.preview').textContent()) ?? '').includes(`long ${LONG - 1}`),
    `alice's #chats li[data-chat=bob] .preview shows long ${LONG - 1}`,
    60_000,
  );
  log(`web figure: ${LONG} messages: sent (answered) in ${sentAt - started} ms, all shown at alice after ${Date.now() - started} ms`);
  const readsFrom = watch.history.length;
  await openChat(a, 'bob');
  await waitMessage(a, `long ${LONG - 1}`, 'the newest long message shown');
  const shown = await a.evaluate(() => ({
    messages: document.querySelectorAll('#messages li.msg').length,
    note: document.querySelector('#messages li.note')?.textContent ?? null,
  }));
  check(shown.messages === 500, `#messages shows ${shown.messages} li.msg, expected the newest 500`);
  check(/older messages are not shown/i.test(shown.note ?? ''), `no "older messages are not shown" note: ${JSON.stringify(shown.note)}`);
  const opened = watch.history.slice(readsFrom).filter((r) => r.who === 'alice' && r.params.contact === 'bob');
  check(opened.some((r) => r.params.limit === 500 && r.params.mark_read === true), `opening read: ${JSON.stringify(opened.map((r) => r.params))}`);
  await until(async () => !(await chat(a, 'bob').locator('.unread').isVisible()), ".unread of bob hidden after opening");
});

await runner.run('i: figures: hush web spawn to usable page', { needs: ['b'], timeout: 45_000 }, async () => {
  await closeUser('alice');
  const t = await openUser('alice', users.alice.context, async (page) => {
    await chat(page, 'bob').waitFor({ state: 'visible' });
  });
  log(`web figure: hush web spawn to URL line = ${t.spawnToUrl} ms`);
  log(`web figure: hush web spawn to usable page (connected, chats shown) = ${t.spawnToUsable} ms`);
  log(`web figure: first-contentful-paint = ${t.fcp?.toFixed(0)} ms`);
  check(t.spawnToUsable < 15_000, `hush web took ${t.spawnToUsable} ms to a usable page`);
});

await runner.run('h: relay offline: queued, then sent without a reload', { needs: ['b'], timeout: 75_000 }, async () => {
  const a = A();
  await openChat(a, 'bob');
  await control('stop-relay');
  await until(async () => (await connState(a)) === 'offline', 'alice #conn[data-state=offline]', 15_000);
  const text = 'sent while the relay was down';
  await send(a, text);
  await waitMessage(a, text, 'the message .state queued', (m) => m.state === 'queued');
  const queued = a.locator('#queued');
  await until(
    async () => (await queued.isVisible()) && Number((await queued.textContent()).trim()) >= 1,
    '#queued shown with a count of at least 1',
  );
  // Set in this document: still there afterwards only if the page was not reloaded.
  await a.evaluate(() => {
    window.__noReload = true;
  });
  await control('start-relay');
  await until(async () => (await connState(a)) === 'connected', 'alice #conn back to connected', 45_000);
  await waitMessage(a, text, 'the queued message to reach on relay or delivered', (m) =>
    ['on relay', 'delivered'].includes(m.state),
  );
  await queued.waitFor({ state: 'hidden' }).catch(() => {
    throw new Error('#queued still shown after the outbox drained');
  });
  check(await a.evaluate(() => window.__noReload === true), 'the page reloaded to get there');
  await waitMessage(B(), text, 'bob receives the message sent while the relay was down', () => true, 45_000);
});

await runner.run('e: a changed key blocks sending until accepted', { needs: ['b'], timeout: 60_000 }, async () => {
  const a = A();
  await openChat(a, 'bob');
  check(!(await a.locator('#key-change-banner').isVisible()), '#key-change-banner shown before any key change');
  // bob loses his keys: his name is freed on the relay and a new identity takes it.
  await closeUser('bob');
  await control('new-identity', { name: 'bob' });
  await openUser('bob', await newContext());
  const b = B();
  await openDialog(b, '#add-contact', '#add-contact-dialog');
  await b.locator('#add-contact-name').fill('alice');
  await b.locator('#add-contact-submit').click();
  await openChat(b, 'alice');
  await send(b, 'new phone, same bob');

  await a.locator('#key-change-banner').waitFor({ state: 'visible', timeout: 15_000 }).catch(() => {
    throw new Error("#key-change-banner not shown in alice's open conversation with bob after his key changed");
  });
  const flag = chat(a, 'bob').locator('.key-changed');
  await flag.waitFor({ state: 'visible' });
  check((await flag.textContent()).includes('KEY CHANGED'), `.key-changed text: ${await flag.textContent()}`);
  await until(
    async () => !(await enabled(a.locator('#composer'))) && !(await enabled(a.locator('#send'))),
    '#composer and #send disabled while the banner shows',
  );
  await waitMessage(a, 'new phone, same bob', "the message under bob's new key, shown at alice");
  // The banner took room above the messages: the newest one must still be in view.
  await until(
    () =>
      a.evaluate(() => {
        const ol = document.getElementById('messages');
        const last = [...ol.querySelectorAll('li.msg')].at(-1);
        if (!last) return false;
        const box = ol.getBoundingClientRect();
        const r = last.getBoundingClientRect();
        return r.bottom <= box.bottom + 1 && r.top >= box.top - 1;
      }),
    "the newest message (under bob's new key) scrolled into view of #messages below the banner",
    5_000,
  );
  await screenshot(a, 'key-change');

  await a.locator('#accept-key').click();
  await a.locator('#key-change-banner').waitFor({ state: 'hidden' });
  await until(
    async () => (await enabled(a.locator('#composer'))) && (await enabled(a.locator('#send'))),
    '#composer and #send enabled after #accept-key',
  );
  await flag.waitFor({ state: 'hidden' });
  check(!(await chat(a, 'bob').locator('.verified').isVisible()), 'bob still shown verified after accepting a new key');
  await send(a, 'welcome back');
  await waitMessage(a, 'welcome back', 'the message after accepting reaches the relay', (m) =>
    ['on relay', 'delivered'].includes(m.state),
  );
  await waitMessage(b, 'welcome back', 'new bob receives it');
});

await runner.run('k: confirming a safety number that changed meanwhile verifies nothing', { needs: ['e'], timeout: 60_000 }, async () => {
  const a = A();
  await openChat(a, 'bob');
  await openDialog(a, '#verify', '#safety-dialog');
  const digits = a.locator('#safety-number span.digits');
  await until(async () => (await digits.count()) === 12, 'alice: 12 #safety-number span.digits');
  const before = (await digits.allTextContents()).join(' ');
  check(await enabled(a.locator('#confirm-verified')), '#confirm-verified disabled for a bob not verified');
  // While alice compares, bob's key changes again and alice accepts it in another tab.
  await closeUser('bob');
  await control('new-identity', { name: 'bob' });
  await openUser('bob', await newContext());
  const b = B();
  await openDialog(b, '#add-contact', '#add-contact-dialog');
  await b.locator('#add-contact-name').fill('alice');
  await b.locator('#add-contact-submit').click();
  await openChat(b, 'alice');
  await send(b, 'third phone');
  const other = await users.alice.context.newPage();
  watch.page(other, 'alice (second tab)');
  try {
    await other.goto(users.alice.url);
    await connected(other);
    await openChat(other, 'bob');
    await other.locator('#key-change-banner').waitFor({ state: 'visible', timeout: 15_000 });
    await other.locator('#accept-key').click();
    await other.locator('#key-change-banner').waitFor({ state: 'hidden' });
    watch.problems.push(...(await Watch.csp(other, 'alice (second tab)')));
  } finally {
    await other.close();
  }
  // The first tab still shows the old number; confirming it must not verify the new key.
  check((await digits.allTextContents()).join(' ') === before, 'the open dialog changed its number by itself');
  await a.locator('#confirm-verified').click();
  const status = a.locator('#safety-status');
  await until(
    async () => /changed/i.test((await status.textContent()) ?? '') && (await a.locator('#safety-status.changed').count()) === 1,
    '#safety-status says the number changed (safety_number_changed)',
  );
  await until(
    async () => (await digits.count()) === 12 && (await digits.allTextContents()).join(' ') !== before,
    'the dialog shows the new safety number',
  );
  check(await enabled(a.locator('#confirm-verified')), '#confirm-verified not offered for the new number');
  await escapeCloses(a, '#safety-dialog');
  check(!(await chat(a, 'bob').locator('.verified').isVisible()), 'bob shown verified after confirming a stale number');
});

/**
 * alice's page is open and connected; her hush web stops and `squat.mjs` takes its port in
 * `mode`. The page must reconnect to it (the squatter sees the upgrade), send it no frame but a
 * close, never show connected, stop reconnecting, lock the composer and say this hush web is gone.
 */
async function squatted(context, mode) {
  const web = await control('start-web', { name: 'alice' });
  const page = await context.newPage();
  const uncaught = [];
  page.on('pageerror', (e) => uncaught.push(e.message));
  await page.goto(web.url);
  await connected(page);
  await chat(page, 'bob').waitFor({ state: 'visible' });
  await openChat(page, 'bob');
  await page.evaluate(() => {
    window.__connStates = [];
    new MutationObserver(() => window.__connStates.push(document.getElementById('conn').dataset.state)).observe(
      document.getElementById('conn'),
      { attributes: true, attributeFilter: ['data-state'] },
    );
  });
  const port = Number(new URL(web.url).port);
  await control('stop-web', { name: 'alice' });
  const fake = await squat(port, mode);
  try {
    await until(() => fake.upgrades.length > 0, `${mode}: the page reconnects to the squatter on port ${port}`, 20_000);
    check(
      fake.upgrades[0].includes(tokenOf(web.url)),
      `${mode}: the squatter's upgrade is not the page's reconnect: ${fake.upgrades[0]}`,
    );
    const noData = () =>
      check(
        fake.dataFrames().length === 0,
        `${mode}: the page sent the squatter ${fake.dataFrames().length} frames: ${JSON.stringify(fake.dataFrames().slice(0, 3))}`,
      );
    await sleep(500); // a page that trusts the socket sends subscribe at once
    noData();
    await until(
      async () =>
        (await page.locator('body[data-sock="gone"]').count()) === 1 &&
        (await page.locator('#sock-banner').isVisible()) &&
        /gone/i.test((await page.locator('#sock-banner').textContent()) ?? ''),
      `${mode}: #sock-banner says this hush web is gone`,
      mode === 'silent' ? 20_000 : 10_000,
    );
    const upgrades = fake.upgrades.length;
    await sleep(2_500); // the first reconnect delay is 300 ms: a page still retrying would show it
    check(fake.upgrades.length === upgrades, `${mode}: the page kept reconnecting (${fake.upgrades.length} upgrades)`);
    noData();
    const states = await page.evaluate(() => window.__connStates);
    check(!states.includes('connected'), `${mode}: #conn went back to connected: ${states.join(', ')}`);
    check((await connState(page)) === 'disconnected', `${mode}: #conn is ${await connState(page)}`);
    check(!(await enabled(page.locator('#composer'))), `${mode}: #composer still enabled on a gone hush web`);
    check(uncaught.length === 0, `${mode}: uncaught errors in the page: ${uncaught.join('; ')}`);
    log(`web squatter (${mode}): ${upgrades} upgrade(s), frames received: ${fake.frames.map((f) => f.opcode).join(',') || 'none'}`);
    if (mode === 'other-instance') await screenshot(page, 'hush-web-gone');
  } finally {
    await fake.close();
    await page.close();
  }
}

await runner.run('j: a stopped hush web\'s port taken by another server gets nothing', { needs: ['b'], timeout: 90_000 }, async () => {
  // Not watched: the refused reconnects while the port is free are logged as console errors.
  await closeUser('alice');
  const context = await browser.newContext({ viewport: VIEWPORT });
  try {
    for (const mode of ['other-instance', 'not-hello', 'silent']) await squatted(context, mode);
  } finally {
    await context.close();
  }
});

await runner.run('a (whole run): nothing left the machine, no console errors or CSP violations', {}, async () => {
  const extra = [];
  for (const [name, user] of Object.entries(users)) {
    if (!user.page.isClosed()) extra.push(...(await Watch.csp(user.page, name)));
  }
  watch.assertClean(extra);
  log(`web: ${watch.requests} requests, all to loopback`);
});

await browser.close();
closeControl();
const failed = runner.failed;
log(failed.length === 0 ? 'web scenarios: all passed' : `web scenarios: FAILED: ${failed.join(', ')}`);
process.exit(failed.length === 0 ? 0 : 1);
