/**
 * The web console in a real headless Chromium (Debian's, driven by playwright-core) against a real
 * xenod (`--web 127.0.0.1:PORT`) and a real guest: login, the live list, the serial console (its
 * kept boot log, the heartbeat, typing seen both in the page and in `xeno console`), pause from the
 * page seen in `xeno list`, the file:line:col of a bad config; and the refusals without a session
 * or without the CSRF token, over HTTP and WebSocket. Screenshots go to test-artifacts/.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { REPO, TestDaemon, freePort, sleep } from './helpers/harness.js';

const ARTIFACTS = path.join(REPO, 'test-artifacts');
const DOM = 'web1';

/** Status of a WebSocket handshake (101 when accepted). */
function wsStatus(port: number, urlPath: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: urlPath,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.on('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

describe('web console', { timeout: 900_000 }, () => {
  let d: TestDaemon;
  let port = 0;
  let base = '';
  let token = '';
  let browser: Browser;
  let page: Page;
  let cli: ChildProcess | undefined;
  let cliOut = '';

  /** The text xterm shows (its accessibility tree, screenReaderMode). */
  const termText = () => page.locator('.xterm-accessibility-tree').innerText();

  before(async () => {
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    d = new TestDaemon({ args: ['--web', `127.0.0.1:${port}`] });
    await d.start();
    token = (await d.ok(['web-token'])).split('\n')[0]!.trim();
    await d.createGuest(DOM);
    await d.waitConsole(DOM, /heartbeat \d+/, 180_000);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    mkdirSync(ARTIFACTS, { recursive: true });
  });

  after(async () => {
    cli?.kill('SIGINT');
    await browser?.close().catch(() => undefined);
    await d?.cleanup();
  });

  it('xeno web-token prints the token xenod wrote into its state dir (0600)', async () => {
    const out = await d.ok(['web-token']);
    assert.equal(out.split('\n')[0], token);
    assert.equal(token, readFileSync(path.join(d.stateDir, 'web.token'), 'utf8').trim());
    assert.match(out, new RegExp(`http://127\\.0\\.0\\.1:${port}/`));
    assert.ok(token.length >= 32);
    assert.equal(statSync(path.join(d.stateDir, 'web.token')).mode & 0o777, 0o600);
    const asJson = JSON.parse(await d.ok(['web-token', '--json'])) as { token: string; url: string };
    assert.deepEqual(asJson, { token, url: `http://127.0.0.1:${port}/` });
  });

  it('refuses every /api route and the WebSocket without a session, and state changes without the CSRF token', async () => {
    assert.equal((await fetch(`${base}/api/v1/domains`)).status, 401);
    assert.equal((await fetch(`${base}/api/v1/domains/${DOM}/pause`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 401);
    assert.equal((await fetch(`${base}/api/events/stream`)).status, 401);
    const wrong = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: 'x'.repeat(token.length) }) });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.headers.get('set-cookie'), null);
    assert.equal((await fetch(`${base}/api/v1/domains`, { headers: { cookie: 'xeno_session=forged' } })).status, 401);

    const ok = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    assert.equal(ok.status, 200);
    const setCookie = ok.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    const cookie = setCookie.split(';')[0]!;
    const { csrf } = (await ok.json()) as { csrf: string };
    assert.equal((await fetch(`${base}/api/v1/domains`, { headers: { cookie } })).status, 200);
    const post = (headers: Record<string, string>) =>
      fetch(`${base}/api/v1/domains/${DOM}/pause`, { method: 'POST', headers: { cookie, 'content-type': 'application/json', ...headers }, body: '{}' });
    assert.equal((await post({})).status, 403);
    assert.equal((await post({ 'x-csrf-token': 'f'.repeat(csrf.length) })).status, 403);
    assert.equal((await d.row(DOM))?.state !== 'paused', true, 'a refused pause paused nothing');

    const ws = `/api/v1/domains/${DOM}/console/ws`;
    assert.equal(await wsStatus(port, `${ws}?csrf=${csrf}`, {}), 401, 'no session');
    assert.equal(await wsStatus(port, ws, { cookie }), 403, 'no CSRF token');
    assert.equal(await wsStatus(port, `${ws}?csrf=${csrf}`, { cookie, origin: 'http://evil.example' }), 403, 'another origin');
    assert.equal(await wsStatus(port, `${ws}?csrf=${csrf}`, { cookie, origin: base }), 101, 'the real thing');
  });

  it('logs in (a wrong token is refused) and lists the real guest with its live state', async () => {
    await page.goto(base);
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    await page.locator('.login .error').waitFor();
    assert.match(await page.locator('.login .error').innerText(), /wrong token/);
    await page.fill('input[name=token]', token);
    await page.click('button[type=submit]');
    const row = page.locator(`tr[data-domain=${DOM}]`);
    await row.waitFor();
    assert.match(await row.innerText(), /running|blocked/);
    assert.match(await page.locator('.host').innerText(), /CPUs\s+\d+/);
    await page.waitForSelector('.spark polyline');
    await sleep(5500); // one stats refresh, so the sparkline has points
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-host.png'), fullPage: true });
  });

  it("shows the guest's console: the kept boot log and the live heartbeat", async () => {
    await page.click(`tr[data-domain=${DOM}] a`);
    await page.locator('.xterm-accessibility-tree').waitFor({ state: 'attached' });
    const hb = Number((await until('a heartbeat in the page', async () => /heartbeat (\d+)/.exec(await termText()) ?? undefined))[1]);
    await until('a later heartbeat', async () => [...(await termText()).matchAll(/heartbeat (\d+)/g)].some((m) => Number(m[1]) > hb));
    // The first line of the log xenod kept is at the top of the terminal's scrollback.
    const first = d.consoleLog(DOM).split(/\r?\n/).map((l) => l.trim()).find((l) => l.length > 8)!;
    await page.locator('.xterm-viewport').evaluate((el) => el.scrollTo(0, 0));
    await until(`the boot log's first line (${first})`, async () => (await termText()).includes(first.slice(0, 40)));
  });

  it('what is typed in the page shows in the page and in xeno console, and the other way round', async () => {
    cli = spawn(process.execPath, [path.join(REPO, 'bin/xeno.cjs'), 'console', DOM], { env: { ...process.env, XENO_SOCKET: d.socket }, stdio: ['pipe', 'pipe', 'pipe'] });
    cli.stdout!.on('data', (b) => (cliOut += String(b)));
    await until('xeno console attached', () => /heartbeat/.test(cliOut));
    await page.locator('.xterm').click();
    await page.keyboard.type('echo typed-$((6*7))\n');
    await until('the answer in the page', async () => (await termText()).includes('typed-42'));
    await until('the answer in xeno console', () => cliOut.includes('typed-42'));
    cli.stdin!.write('echo cli-$((5*5))\n');
    await until('the CLI typing in the page', async () => (await termText()).includes('cli-25'));
    await page.fill('input[aria-label="send text"]', 'echo box-$((3*3))');
    await page.click('form.send button');
    await until('the send-text box in the page', async () => (await termText()).includes('box-9'));
    await until('the send-text box in xeno console', () => cliOut.includes('box-9'));
  });

  it('pauses the guest from the page (xeno list says so); unpaused by the CLI, the page is told (pushed, no reload)', async () => {
    await page.goto(`${base}/#/domain/${DOM}`);
    await page.getByRole('button', { name: 'Pause', exact: true }).click();
    const list = await until('xeno list to show it paused', async () => {
      const out = await d.ok(['list']);
      return out.split('\n').find((l) => l.startsWith(DOM) && /--p---/.test(l));
    });
    assert.ok(list);
    await until('the page to show paused', async () => (await page.locator('[data-testid=state]').innerText()) === 'paused');
    await page.locator('.graph polyline').first().waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-domain.png'), fullPage: true });
    // Unpaused by the CLI: the page learns it from the pushed event stream alone.
    await d.ok(['unpause', DOM]);
    await until('the page to show it running again', async () => (await page.locator('[data-testid=state]').innerText()) !== 'paused');
    assert.equal(await page.getByRole('button', { name: 'Pause', exact: true }).count(), 1);
  });

  it('a destructive action asks first (dismissed: nothing happens); mem-set from the page reaches xeno list', async () => {
    await page.goto(`${base}/#/domain/${DOM}`);
    const asked: string[] = [];
    page.once('dialog', (dlg) => {
      asked.push(dlg.message());
      void dlg.dismiss();
    });
    await page.getByRole('button', { name: 'Destroy', exact: true }).click();
    await until('the confirmation', () => asked.length > 0);
    assert.match(asked[0]!, /Destroy web1/);
    await sleep(1000);
    assert.ok(await d.row(DOM), 'a dismissed destroy destroyed nothing');
    page.once('dialog', (dlg) => void dlg.accept('96'));
    await page.getByRole('button', { name: 'Mem-set…', exact: true }).click();
    await until('xeno list to show 96 MiB', async () => (await d.ok(['list'])).split('\n').some((l) => l.startsWith(DOM) && /\s96\s/.test(l)));
    await page.locator('p.ok', { hasText: 'mem-set: done' }).waitFor();
  });

  it('a create with a syntax error shows file:line:col, the same as the CLI', async () => {
    const bad = 'name = "bad1"\nmemory = = 128\n';
    const file = path.join(d.dir, 'bad.cfg');
    writeFileSync(file, bad);
    const r = await d.xeno(['create', file]);
    assert.notEqual(r.code, 0);
    const where = /bad\.cfg:(\d+):(\d+)/.exec(r.stderr);
    assert.ok(where, r.stderr);
    await page.goto(`${base}/#/create`);
    await page.fill('textarea[aria-label=config]', bad);
    await page.fill('input[aria-label="file name"]', 'bad.cfg');
    await page.click('button:has-text("Create")');
    await page.locator('pre.error').waitFor();
    const shown = await page.locator('pre.error').innerText();
    assert.match(shown, new RegExp(`bad\\.cfg:${where[1]}:${where[2]}`));
    assert.equal(await d.row('bad1'), undefined);
  });
});
