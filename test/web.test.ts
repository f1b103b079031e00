/**
 * The web console in a real headless Chromium (Debian's, driven by playwright-core) against a real
 * xenod (`--web 127.0.0.1:PORT`) and a real guest: login, the live list, the serial console (its
 * kept boot log, the heartbeat, typing seen both in the page and in `xeno console`), pause from the
 * page seen in `xeno list`, the file:line:col of a bad config; and the refusals without a session
 * or without the CSRF token, over HTTP and WebSocket. Then the page's actions on the same guest,
 * each checked in `xeno list`: vcpu-set, save and restore, reboot (its marker on the graphs and its
 * event in the history), a live migration to a second xenod with its progress shown while it runs,
 * and a shutdown from the second host's page; an hvm guest's VNC display in noVNC (the RFB
 * handshake done, a lit canvas) and its destroy. Screenshots go to $XENO_ARTIFACTS or test-artifacts/.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { REPO, TestDaemon, freePort, sleep } from './helpers/harness.js';
import { ARTIFACTS, until, webSession, wsStatus } from './helpers/web-page.js';

const DOM = 'web1';
const HVM = 'hvm1';

/**
 * Answers the page's next dialogs in order: a string answers a prompt, true/false accepts or
 * dismisses a confirm. Returns the messages asked.
 */
function answer(page: Page, replies: Array<string | boolean>): string[] {
  const asked: string[] = [];
  const on = (dlg: import('playwright-core').Dialog) => {
    asked.push(dlg.message());
    const r = replies.shift();
    if (replies.length === 0) page.off('dialog', on);
    void (r === false ? dlg.dismiss() : typeof r === 'string' ? dlg.accept(r) : dlg.accept());
  };
  page.on('dialog', on);
  return asked;
}

describe('web console', { timeout: 1_500_000 }, () => {
  const keys = mkdtempSync(path.join(tmpdir(), 'xeno-web-keys-'));
  const key = path.join(keys, 'relocation.psk');
  let d: TestDaemon;
  /** The second host: the migration's target, with its own web console. */
  let b: TestDaemon;
  let relocPort = 0;
  let portB = 0;
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
    writeFileSync(key, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
    d = new TestDaemon({ args: ['--web', `127.0.0.1:${port}`], configText: `(xeno-relocation-key-file '${key}')\n` });
    await d.start();
    token = (await d.ok(['web-token'])).split('\n')[0]!.trim();
    await d.createGuest(DOM, { maxvcpus: 2 });
    await d.waitConsole(DOM, /heartbeat \d+/, 180_000);
    relocPort = await freePort();
    portB = await freePort();
    b = new TestDaemon({
      args: ['--web', `127.0.0.1:${portB}`],
      configText: ['(xend-relocation-server yes)', `(xend-relocation-port ${relocPort})`, "(xend-relocation-address '127.0.0.1')", `(xeno-relocation-key-file '${key}')`].join('\n') + '\n',
    });
    await b.start();
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium' });
    page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    mkdirSync(ARTIFACTS, { recursive: true });
    console.log(`web console screenshots: ${ARTIFACTS}`);
  });

  after(async () => {
    cli?.kill('SIGINT');
    await browser?.close().catch(() => undefined);
    await Promise.all([d?.cleanup(), b?.cleanup()]);
    rmSync(keys, { recursive: true, force: true });
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
    // Until a sparkline has a line to draw (two samples: at once when the sampler's history has them,
    // else after a stats refresh), for the screenshot.
    await page.waitForFunction(() => [...document.querySelectorAll('.spark polyline')].some((p) => (p.getAttribute('points') ?? '').trim().split(/\s+/).length >= 2), null, { timeout: 60_000 });
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

  it("an hvm guest's VNC display in noVNC: behind the session like every route, the RFB handshake done, a lit canvas; shown only where there is one", async () => {
    const disk = path.join(d.dir, 'hvm.img');
    const sector = Buffer.alloc(1024 * 1024);
    sector.set([0xf4, 0xeb, 0xfd]); // hlt; jmp back: SeaBIOS's "Booting from Hard Disk..." stays on the screen
    sector.set([0x55, 0xaa], 510);
    writeFileSync(disk, sector);
    await d.ok(['create', d.writeCfg(HVM, [`name = "${HVM}"`, 'type = "hvm"', 'memory = 64', `disk = [ "${disk},raw,xvda,rw" ]`, 'vnc = 1'].join('\n') + '\n')]);
    const vnc = (await d.row(HVM))?.vnc;
    assert.match(vnc ?? '', /^127\.0\.0\.1:59\d\d$/);

    const { cookie, csrf } = await webSession(base, token);
    const ws = `/api/v1/domains/${HVM}/vnc/ws`;
    assert.equal(await wsStatus(port, `${ws}?csrf=${csrf}`, {}), 401, 'no session');
    assert.equal(await wsStatus(port, ws, { cookie }), 403, 'no CSRF token');
    assert.equal(await wsStatus(port, `${ws}?csrf=${csrf}`, { cookie, origin: 'http://evil.example' }), 403, 'another origin');
    assert.equal(await wsStatus(port, `/api/v1/domains/${DOM}/vnc/ws?csrf=${csrf}`, { cookie }), 409, 'a guest without a display');
    assert.equal(await wsStatus(port, `/api/v1/domains/nosuch/vnc/ws?csrf=${csrf}`, { cookie }), 404, 'no such guest');

    await page.goto(`${base}/#/domain/${DOM}`);
    await page.locator('[data-testid=state]').waitFor();
    assert.equal(await page.locator('.vnc').count(), 0, 'no display shown for a guest without one');
    await page.goto(`${base}/#/domain/${HVM}`);
    await until('noVNC connected (RFB handshake done)', async () => (await page.locator('[data-testid=vnc-status]').innerText()) === 'connected', 120_000);
    const lit = () =>
      page.locator('.vnc canvas').evaluate((c: HTMLCanvasElement) => {
        const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4) if (px[i]! + px[i + 1]! + px[i + 2]! > 0) n++;
        return { n, w: c.width, h: c.height };
      });
    const shown = await until('the guest screen drawn on the canvas', async () => ((await lit()).n > 100 ? lit() : undefined), 120_000);
    assert.ok(shown.w >= 640 && shown.h >= 400, `the VGA's size: ${shown.w}x${shown.h}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-domain-vnc.png'), fullPage: true });

    const asked = answer(page, [true]);
    await page.getByRole('button', { name: 'Destroy', exact: true }).click();
    await until('xeno list without the destroyed guest', async () => (await d.row(HVM)) === undefined);
    assert.match(asked[0]!, new RegExp(`Destroy ${HVM}`));
    await until('the page to say the display closed', async () => (await page.locator('[data-testid=vnc-status]').innerText()).startsWith('disconnected'));
  });

  it('a display with a vncpasswd: the page asks for it, QEMU refuses a wrong one and accepts the right one', async () => {
    const name = 'hvm2';
    const disk = path.join(d.dir, 'hvm.img');
    await d.ok(['create', d.writeCfg(name, [`name = "${name}"`, 'type = "hvm"', 'memory = 64', `disk = [ "${disk},raw,xvda,rw" ]`, 'vfb = [ "vnc=1,vncpasswd=pw12345" ]'].join('\n') + '\n')]);
    try {
      const status = page.locator('[data-testid=vnc-status]');
      let asked = answer(page, ['wrong']);
      await page.goto(`${base}/#/domain/${name}`);
      await until('the refusal of a wrong password', async () => /^refused: /.test(await status.innerText()), 120_000);
      assert.match(asked[0]!, /VNC password of hvm2/);
      asked = answer(page, ['pw12345']);
      await page.reload();
      await until('noVNC connected with the right password', async () => (await status.innerText()) === 'connected', 120_000);
      assert.equal(asked.length, 1);
    } finally {
      await d.xeno(['destroy', name]);
    }
  });

  it('vcpu-set from the page reaches xeno list and the guest', async () => {
    await page.goto(`${base}/#/domain/${DOM}`);
    answer(page, ['2']);
    await page.getByRole('button', { name: 'VCPU-set…', exact: true }).click();
    await until('xeno list to show 2 vcpus', async () => (await d.row(DOM))?.vcpus === 2);
    await page.locator('p.ok', { hasText: 'vcpu-set: done' }).waitFor();
    await until('the guest to see 2 cpus online', async () => /^2$/m.test(await d.guestRun(DOM, 'grep -c ^processor /proc/cpuinfo')), 120_000);
  });

  it('save from the page (asked, then confirmed) stops the guest into a file; restore from the host page brings it back where it was', async () => {
    const file = path.join(d.dir, 'web1.save');
    await page.goto(`${base}/#/domain/${DOM}`);
    const asked = answer(page, [file, true]);
    await page.getByRole('button', { name: 'Save…', exact: true }).click();
    await until('xeno list without the saved guest', async () => (await d.row(DOM)) === undefined, 300_000);
    assert.match(asked[1]!, /Save web1 to .*web1\.save and stop it\?/);
    assert.ok(existsSync(file));
    const beat = d.lastHeartbeat(DOM);
    const from = d.consoleLog(DOM).length;

    await page.goto(`${base}/#/`);
    answer(page, [file]);
    await page.getByRole('button', { name: 'Restore…', exact: true }).click();
    await until('xeno list to show it running again', async () => ['running', 'blocked'].includes((await d.row(DOM))?.state ?? ''), 300_000);
    await page.locator(`tr[data-domain=${DOM}]`).waitFor();
    const m = await d.waitConsole(DOM, /heartbeat (\d+)\r?\n/, 120_000, from);
    assert.ok(Number(m[1]) >= beat && Number(m[1]) <= beat + 3, `the heartbeat goes on from ${beat}: ${m[1]}`);
    assert.equal((await d.row(DOM))?.vcpus, 2, 'restored with its 2 vcpus');
  });

  it('reboot from the page: the guest boots again; its marker is on the graphs and its event in the history', async () => {
    await page.goto(`${base}/#/domain/${DOM}`);
    const from = d.consoleLog(DOM).length;
    const asked = answer(page, [true]);
    await page.getByRole('button', { name: 'Reboot', exact: true }).click();
    await d.waitConsole(DOM, /xeno-guest: up hostname/, 240_000, from);
    assert.match(asked[0]!, /Reboot web1\?/);
    await d.waitConsole(DOM, /heartbeat \d+/, 60_000, from);
    const events = page.locator('.events li');
    for (const kind of ['create', 'pause', 'unpause', 'mem-set', 'vcpu-set', 'save', 'restore', 'reboot']) {
      await until(`the ${kind} event in the history`, async () => (await events.allInnerTexts()).some((t) => new RegExp(`\\b${kind}\\b`).test(t)));
    }
    // The graphs' 5-minute window holds the reboot (a slow boot may push it out of the default
    // minute): a marker on each of the four graphs.
    await page.selectOption('select[aria-label=window]', { label: '5 min' });
    await until('a reboot marker on every graph', async () => {
      const titles = await page.locator('.graph .marker title').allTextContents();
      return titles.filter((t) => / reboot: /.test(t)).length >= 4;
    });
    await page.screenshot({ path: path.join(ARTIFACTS, 'web-domain-events.png'), fullPage: true });
  });

  it('a live migration to a second host from the page shows its progress while it runs; the guest leaves this host and runs on the other', async () => {
    await page.goto(`${base}/#/domain/${DOM}`);
    await page.locator('[data-testid=state]').waitFor();
    // Every text the progress line shows, recorded in the page as it changes.
    await page.evaluate(() => {
      const seen: string[] = ((window as unknown as { progressSeen: string[] }).progressSeen = []);
      new MutationObserver(() => {
        const t = document.querySelector('[data-testid=migrate-progress]')?.textContent;
        if (t && seen.at(-1) !== t) seen.push(t);
      }).observe(document.body, { subtree: true, childList: true, characterData: true });
    });
    const asked = answer(page, [`127.0.0.1:${relocPort}`, true, true]);
    await page.getByRole('button', { name: 'Migrate…', exact: true }).click();
    await page.locator('p.ok', { hasText: 'migrate: done' }).waitFor({ timeout: 600_000 });
    assert.match(asked[2]!, new RegExp(`Migrate web1 to 127\\.0\\.0\\.1:${relocPort} live\\?`));
    const seen = await page.evaluate(() => (window as unknown as { progressSeen: string[] }).progressSeen);
    assert.ok(seen.some((t) => /^(active|completed): [1-9][\d.]* (MiB|GiB) sent/.test(t)), `progress with bytes sent was shown: ${JSON.stringify(seen)}`);
    assert.equal(await d.row(DOM), undefined, 'gone from this host');
    const there = await b.row(DOM);
    assert.ok(there && ['running', 'blocked'].includes(there.state), `running on the second host: ${JSON.stringify(there)}`);
    assert.match(await page.locator('p.ok').innerText(), new RegExp(`now domain ${there.id} on 127\\.0\\.0\\.1`));
    // Its memory came along: the heartbeat counter goes on from the last one printed here.
    const beat = d.lastHeartbeat(DOM);
    await b.waitConsole(DOM, new RegExp(`heartbeat ${beat + 3}\\r?\\n`), 120_000);
    const first = Number(/heartbeat (\d+)/.exec(b.consoleLog(DOM))?.[1]);
    assert.ok(first >= beat - 1 && first <= beat + 2, `the first heartbeat there (${first}) follows the last here (${beat})`);
  });

  it("shutdown from the second host's page (its own login): the guest powers off, xeno list there has it no more", async () => {
    const ctxB: BrowserContext = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    try {
      const pageB = await ctxB.newPage();
      const tokenB = (await b.ok(['web-token'])).split('\n')[0]!.trim();
      await pageB.goto(`http://127.0.0.1:${portB}/`);
      await pageB.fill('input[name=token]', tokenB);
      await pageB.click('button[type=submit]');
      await pageB.locator(`tr[data-domain=${DOM}] a`).click();
      await pageB.locator('[data-testid=state]').waitFor();
      const asked = answer(pageB, [true]);
      await pageB.getByRole('button', { name: 'Shutdown', exact: true }).click();
      await until('xeno list on the second host without the guest', async () => (await b.row(DOM)) === undefined, 240_000);
      assert.match(asked[0]!, /Shut web1 down\?/);
      await until('the poweroff in the page history', async () => (await pageB.locator('.events li').allInnerTexts()).some((t) => /poweroff|powered off/.test(t)));
    } finally {
      await ctxB.close();
    }
  });
});
