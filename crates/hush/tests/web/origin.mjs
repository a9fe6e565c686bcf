// Scenario f: who may open the WebSocket. A page of another origin must not, even holding the
// right token; a same-origin page needs the right token. Checked in Chromium (what an attack
// page can do) and, for the exact status codes, with raw HTTP from node.

import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { check } from './harness.mjs';

/** A page on another loopback port: the "evil" origin. Resolves to {url, close}. */
export function otherOrigin() {
  const server = http.createServer((_, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><meta charset="utf-8"><title>another site</title><p>another site</p>');
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({ url: `http://127.0.0.1:${port}/`, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

/**
 * In the page: open a WebSocket to `url`; 'open' if it opened (then closed again), else how it
 * failed. A socket refused with 403 before the upgrade fails with 'error'.
 */
export async function tryWebSocket(page, url) {
  return page.evaluate(
    (target) =>
      new Promise((resolve) => {
        let socket;
        try {
          socket = new WebSocket(target);
        } catch (e) {
          resolve(`throw: ${e.message}`);
          return;
        }
        const timer = setTimeout(() => resolve('timeout'), 5_000);
        socket.onopen = () => {
          clearTimeout(timer);
          socket.close();
          resolve('open');
        };
        socket.onerror = () => {
          clearTimeout(timer);
          resolve('error');
        };
        socket.onclose = () => {
          clearTimeout(timer);
          resolve('closed');
        };
      }),
    url,
  );
}

/** A plain HTTP request to hush web; resolves to {status, headers, body}. */
export function request(port, path, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * A raw WebSocket upgrade request: resolves to the status hush web answered (101 when it
 * accepted the upgrade; the socket is then closed at once).
 */
export function upgradeStatus(port, path, origin) {
  const headers = {
    Connection: 'Upgrade',
    Upgrade: 'websocket',
    'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
  };
  if (origin !== undefined) headers.Origin = origin;
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
    req.end();
  });
}

/** The headers every response must carry (contract: "Every response"). */
export function checkSecurityHeaders(what, headers) {
  const csp = headers['content-security-policy'] ?? '';
  for (const directive of [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ]) {
    check(csp.includes(directive), `${what}: Content-Security-Policy lacks ${directive}: got ${JSON.stringify(csp)}`);
  }
  const expected = {
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'cache-control': 'no-store',
  };
  for (const [name, value] of Object.entries(expected)) {
    check(
      (headers[name] ?? '').toLowerCase() === value.toLowerCase(),
      `${what}: header ${name} expected ${value}, got ${JSON.stringify(headers[name])}`,
    );
  }
}

/** Scenario f, given a browser context whose pages are not watched (refusals log errors). */
export async function originAndToken(context, web) {
  const port = Number(new URL(web.url).port);
  const token = web.token;
  const wrong = token.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
  const path = (t) => (t === null ? '/api/ws' : `/api/ws?token=${t}`);

  const evil = await otherOrigin();
  const page = await context.newPage();
  try {
    // Another origin, holding the right token: the browser sends its Origin; hush web refuses.
    await page.goto(evil.url);
    const fromEvil = await tryWebSocket(page, `ws://127.0.0.1:${port}${path(token)}`);
    check(fromEvil !== 'open', `a page of ${evil.url} opened the socket with the right token (got ${fromEvil})`);

    // Same origin (the bare page, no token in its URL).
    await page.goto(`http://127.0.0.1:${port}/`);
    for (const [label, t] of [
      ['no token', null],
      ['a wrong token', wrong],
      ['a short token', token.slice(0, 32)],
    ]) {
      const got = await tryWebSocket(page, `ws://127.0.0.1:${port}${path(t)}`);
      check(got !== 'open', `same-origin socket with ${label} opened (expected it to fail)`);
    }
    // The same server under another allowed Host name: Origin http://127.0.0.1:PORT is not
    // http:// + Host (localhost:PORT), so it is a different origin and refused.
    const alias = await tryWebSocket(page, `ws://localhost:${port}${path(token)}`);
    check(alias !== 'open', `a socket to localhost:${port} from origin 127.0.0.1:${port} opened (Origin ≠ Host)`);
    const right = await tryWebSocket(page, `ws://127.0.0.1:${port}${path(token)}`);
    check(right === 'open', `same-origin socket with the right token did not open (got ${right})`);
  } finally {
    await page.close();
    await evil.close();
  }

  // Exact answers, without a browser in between.
  const evilOrigin = evil.url.replace(/\/$/, '');
  const cases = [
    ['right token, no Origin (a bot)', path(token), undefined, 101],
    ['right token, same Origin', path(token), `http://127.0.0.1:${port}`, 101],
    ['right token, Origin of another site', path(token), evilOrigin, 403],
    ['right token, Origin http://evil.example', path(token), 'http://evil.example', 403],
    ['no token', path(null), `http://127.0.0.1:${port}`, 403],
    ['wrong token', path(wrong), `http://127.0.0.1:${port}`, 403],
  ];
  for (const [label, p, origin, expected] of cases) {
    const status = await upgradeStatus(port, p, origin);
    check(status === expected, `WebSocket upgrade with ${label}: expected ${expected}, got ${status}`);
  }

  // DNS rebinding: a Host that is not this server's loopback name is refused.
  const rebound = await request(port, '/', { Host: `evil.example:${port}` });
  check(rebound.status === 403, `GET / with Host evil.example:${port}: expected 403, got ${rebound.status}`);
  const index = await request(port, '/');
  check(index.status === 200, `GET /: expected 200, got ${index.status}`);
  check(
    /^text\/html;\s*charset=utf-8$/i.test(index.headers['content-type'] ?? ''),
    `GET /: Content-Type expected text/html; charset=utf-8, got ${index.headers['content-type']}`,
  );
  checkSecurityHeaders('GET /', index.headers);
  const missing = await request(port, '/favicon.ico');
  check(missing.status === 404, `GET /favicon.ico: expected 404, got ${missing.status}`);
  checkSecurityHeaders('GET /favicon.ico (404)', missing.headers);
}
