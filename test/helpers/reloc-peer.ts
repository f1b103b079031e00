/**
 * Hand-written relocation peers for the hardening tests, run inside a test's network namespace
 * (`ip netns exec NS node reloc-peer.js MODE JSON`): a flood of half-open peers, junk before the
 * handshake, a handshake with a bogus proof or an old protocol, a tampering relay, a fake target.
 * Each prints one JSON line of what it saw (the relay: one line per event).
 */
import net from 'node:net';
import { PROTOCOL_VERSION, newNonce, sourceProof } from '../../src/migration/protocol.js';

const [mode, json] = process.argv.slice(2);
const a = JSON.parse(json ?? '{}') as Record<string, any>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const out = (o: unknown) => process.stdout.write(JSON.stringify(o) + '\n');

function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: a.host, port: a.port, localAddress: a.local });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Lines the other side sends, and when it closes. */
function watch(s: net.Socket) {
  const w = { text: '', closedAt: 0 };
  s.setEncoding('utf8');
  s.on('data', (d: string) => (w.text += d));
  s.on('error', () => undefined);
  s.on('close', () => (w.closedAt = Date.now()));
  return w;
}

async function flood(): Promise<void> {
  const socks: net.Socket[] = [];
  let closed = 0;
  for (let i = 0; i < a.n; i++) {
    try {
      const s = await connect();
      s.on('error', () => undefined);
      s.on('close', () => closed++);
      socks.push(s);
    } catch {
      /* refused at connect: counts as not opened */
    }
  }
  const t = setInterval(() => {
    if (!a.silent) for (const s of socks) if (!s.destroyed) s.write('{"t":"hello","proto":2,"nonce":"' + 'a'.repeat(64) + '"}\n');
  }, 200);
  await sleep(a.ms);
  clearInterval(t);
  out({ opened: socks.length, closedByPeer: closed });
  for (const s of socks) s.destroy();
}

async function junk(): Promise<void> {
  const t0 = Date.now();
  const s = await connect();
  const w = watch(s);
  if (a.kind === 'long') s.write('{"t":"hello","x":"' + 'x'.repeat(1024 * 1024) + '"}\n');
  if (a.kind === 'garbage') s.write('this is not json\n');
  if (a.kind === 'many') for (let i = 0; i < 1000; i++) s.write('{"t":"hello"}\n');
  while (!w.closedAt && Date.now() - t0 < a.waitMs) await sleep(50);
  out({ closed: w.closedAt > 0, afterMs: w.closedAt ? w.closedAt - t0 : null, got: w.text.slice(0, 500) });
  s.destroy();
}

async function handshake(): Promise<void> {
  const s = await connect();
  const w = watch(s);
  const nonce = newNonce();
  s.write(JSON.stringify({ t: 'hello', proto: a.proto ?? PROTOCOL_VERSION, xeno: 'hand-written', nonce }) + '\n');
  while (!w.text.includes('\n') && !w.closedAt) await sleep(20);
  const hello = JSON.parse(w.text.split('\n')[0]!) as { t: string; nonce: string };
  if (hello.t === 'hello') {
    w.text = '';
    const proof = a.bogus ? a.bogus : sourceProof(Buffer.from(a.key, 'hex'), hello.nonce, nonce);
    s.write(JSON.stringify({ t: 'auth', proof }) + '\n');
  }
  const t0 = Date.now();
  while (!w.closedAt && !w.text.includes('"t":"welcome"') && Date.now() - t0 < 15_000) await sleep(20);
  out({ first: hello, got: w.text, closed: w.closedAt > 0 });
  s.destroy();
}

/** Relays source->target, rewriting `prepare` (whatever framing it has); target->source as is. */
async function relay(): Promise<void> {
  const server = net.createServer((c) => {
    const up = net.connect({ host: a.to, port: a.toPort });
    let buf = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        let line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const framed = /^[0-9a-f]{64} /.test(line);
        const body = framed ? line.slice(65) : line;
        if (body.includes('"t":"prepare"')) {
          const m = JSON.parse(body) as { config: { disks: Array<Record<string, unknown>> } };
          m.config.disks.push({ target: a.extraDisk, format: 'raw', vdev: 'xvdb', access: 'rw', devtype: 'disk' });
          line = (framed ? line.slice(0, 65) : '') + JSON.stringify(m);
          out({ tampered: 'prepare', addedDisk: a.extraDisk });
        }
        up.write(line + '\n');
      }
    });
    up.pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
    c.on('close', () => up.destroy());
    up.on('close', () => c.destroy());
  });
  server.listen(a.port, a.host, () => out({ listening: a.port }));
}

/** A target that speaks another protocol version. */
async function fakeTarget(): Promise<void> {
  const server = net.createServer((c) => {
    c.setEncoding('utf8');
    c.once('data', () => c.write(JSON.stringify({ t: 'hello', proto: a.proto, xeno: 'future', nonce: newNonce(), proof: 'x' }) + '\n'));
    c.on('error', () => undefined);
  });
  server.listen(a.port, a.host, () => out({ listening: a.port }));
}

const modes: Record<string, () => Promise<void>> = { flood, junk, handshake, relay, 'fake-target': fakeTarget };
modes[mode!]!().catch((e: unknown) => {
  out({ error: String(e) });
  process.exit(1);
});
