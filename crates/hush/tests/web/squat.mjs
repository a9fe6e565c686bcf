// A stand-in for "another program took the port of a stopped hush web": a node HTTP server that
// accepts the WebSocket upgrade with any token (RFC 6455 handshake done by hand, no library) and
// records every frame the page sends. It never answers a request; it says, first:
// - 'other-instance': a well-formed `hello` of another run (what a restarted or fake hush web says),
// - 'not-hello': a `status` notification instead of a hello (a server that skips the proof),
// - 'silent': nothing at all.
// A page that authenticates the server sends it no JSON-RPC frame in any of these cases.

import { createHash } from 'node:crypto';
import http from 'node:http';

import { sleep } from './harness.mjs';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** One unmasked server-to-client text frame. */
function textFrame(text) {
  const body = Buffer.from(text, 'utf8');
  if (body.length < 126) return Buffer.concat([Buffer.from([0x81, body.length]), body]);
  const head = Buffer.from([0x81, 126, body.length >> 8, body.length & 0xff]);
  return Buffer.concat([head, body]);
}

/** Parse the (masked) client frames in `buf`; returns [frames, rest]. */
function parseFrames(buf) {
  const frames = [];
  let at = 0;
  for (;;) {
    if (buf.length - at < 2) break;
    const opcode = buf[at] & 0x0f;
    const masked = (buf[at + 1] & 0x80) !== 0;
    let len = buf[at + 1] & 0x7f;
    let p = at + 2;
    if (len === 126) {
      if (buf.length - p < 2) break;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (buf.length - p < 8) break;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    const maskLen = masked ? 4 : 0;
    if (buf.length - p < maskLen + len) break;
    const mask = masked ? buf.subarray(p, p + 4) : null;
    p += maskLen;
    const payload = Buffer.from(buf.subarray(p, p + len));
    if (mask) for (let i = 0; i < payload.length; i += 1) payload[i] ^= mask[i % 4];
    frames.push({ opcode, text: opcode === 1 ? payload.toString('utf8') : null });
    at = p + len;
  }
  return [frames, buf.subarray(at)];
}

/**
 * Listen on 127.0.0.1:`port` (retrying while the stopped hush web's socket frees it) and play
 * `mode`. Returns { upgrades: [request urls], frames: [{opcode, text}], close() }.
 */
export async function squat(port, mode, timeoutMs = 10_000) {
  const record = { upgrades: [], frames: [], httpRequests: 0 };
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    record.httpRequests += 1;
    res.writeHead(404).end();
  });
  server.on('upgrade', (req, socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    record.upgrades.push(req.url);
    const key = req.headers['sec-websocket-key'] ?? '';
    const accept = createHash('sha1').update(key + GUID).digest('base64');
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    let pending = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      const [frames, rest] = parseFrames(Buffer.concat([pending, chunk]));
      pending = rest;
      record.frames.push(...frames);
    });
    if (mode === 'other-instance') {
      const params = { instance: 'f'.repeat(32), name: 'alice' };
      socket.write(textFrame(JSON.stringify({ jsonrpc: '2.0', method: 'hello', params })));
    } else if (mode === 'not-hello') {
      const params = { connected: true, queued: 0, name: 'alice' };
      socket.write(textFrame(JSON.stringify({ jsonrpc: '2.0', method: 'status', params })));
    }
  });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          resolve();
        });
      });
      break;
    } catch (e) {
      if (e.code !== 'EADDRINUSE' || Date.now() > deadline) throw e;
      await sleep(20);
    }
  }
  record.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  };
  /** Frames carrying data (text or binary): a page that authenticates the server sends none. */
  record.dataFrames = () => record.frames.filter((f) => f.opcode !== 0x8);
  return record;
}
