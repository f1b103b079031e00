/**
 * Live migration: xeno (`POST /v1/domains/DOM/migrate` between two xenods on this machine: the
 * authenticated control protocol, the stream encrypted and authenticated with TLS-PSK) versus raw
 * QEMU doing a plain-TCP migration between two QEMUs (the argv xeno would use, bandwidth cap lifted,
 * the same auto-converge policy), alternating rounds in one run. Each side's guest moves back and
 * forth between its two ends. For each guest load (guest-load.ts: idle, a console line every 10 ms,
 * N MiB/s dirtied) the same rounds are run.
 *  - raw:  start the target QEMU (-incoming defer), migrate-incoming tcp:127.0.0.1:0, migrate from
 *          the source, wait completed, cont on the target. Timed from the target's start to `cont`.
 *  - xeno: the API call, from the request to the answer (the guest running on the target).
 * Each load runs in each migration mode (`--mode precopy,postcopy,multifd:N`; default precopy, and
 * for a dirty:N load also postcopy and multifd:2), both sides with the same tuning and
 * `--max-downtime MS` (QEMU's downtime-limit, default 300). Postcopy on xeno's side needs
 * vm.unprivileged_userfaultfd=1 (its QEMU runs unprivileged): without it the mode is reported as
 * not run, with the reason. Per mode: converged?, total, guest-seen downtime, throttle reached.
 * Targets (issue 11): total <= 1.1x raw, QEMU downtime <= raw + 10 ms.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import type { MigrateResult } from '../src/migration/client.js';
import { writePskDir } from '../src/migration/protocol.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { freePort, sleep } from '../test/helpers/harness.js';
import { STOP_LOAD, loadCommand, parseLoads, serialRun, waitSerial } from './guest-load.js';
import { arg, benchDaemon, onInterrupt, guestConfig, infoRow, median, plusRow, ratioRow, report } from './lib.js';
import { RawQemu, parallelOf, parseModes, type Mode, type Raw } from './migrate-raw.js';

const MEM = arg('mem', 512);

const config = (name: string): DomainConfig => guestConfig(name, MEM);

export async function run(): Promise<void> {
  const rounds = arg('rounds', 5);
  const i = process.argv.indexOf('--load');
  const loads = parseLoads(i >= 0 ? process.argv[i + 1] : undefined, ['idle', 'print', 'dirty:100']);
  const m = process.argv.indexOf('--mode');
  const modes = m >= 0 ? parseModes(process.argv[m + 1], ['precopy']) : undefined;
  const maxDowntimeMs = arg('max-downtime', 300);
  const keyDir = path.join('/tmp', `xeno-bench-mig-${process.pid}`);
  mkdirSync(keyDir, { recursive: true, mode: 0o700 });
  const keyDone = onInterrupt(async () => rmSync(keyDir, { recursive: true, force: true }));
  const keyFile = path.join(keyDir, 'relocation.psk');
  writeFileSync(keyFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  const tlsDir = writePskDir(path.join(keyDir, 'raw-tls'), randomBytes(32).toString('hex'));
  const ports = [await freePort(), await freePort()];
  const cfg = (port: number) => `(xend-relocation-server yes)\n(xend-relocation-port ${port})\n(xend-relocation-address '127.0.0.1')\n(xeno-relocation-key-file '${keyFile}')\n`;
  const ends = [benchDaemon({ configText: cfg(ports[0]!) }), benchDaemon({ configText: cfg(ports[1]!) })];
  let raw: Raw | undefined;
  let rawq: RawQemu | undefined;
  try {
    await Promise.all(ends.map((d) => d.start()));
    const backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'auto', cacheDir: ends[0]!.dir });
    const accel = backend.caps.accel;
    rawq = new RawQemu(backend, ends[0]!.dir, config('raw'));
    raw = await rawq.start(false);
    await ends[0]!.client.post('/v1/domains', { config: config('bmig') });
    await Promise.all([waitSerial(qemuPaths(raw.runDir).serial, /heartbeat 3\b/), ends[0]!.waitConsole('bmig', /heartbeat 3\b/, 120_000)]);
    let at = 0;
    const uffd = readFileSync('/proc/sys/vm/unprivileged_userfaultfd', 'utf8').trim();
    for (const load of loads) {
      await serialRun(qemuPaths(raw.runDir).serial, `${STOP_LOAD}; ${loadCommand(load)}`);
      await ends[at]!.guestRun('bmig', `${STOP_LOAD}; ${loadCommand(load)}`, 60_000);
      await sleep(2000);
      for (const mode of modes ?? (load.startsWith('dirty:') ? ['precopy', 'postcopy', 'multifd:2'] as Mode[] : ['precopy'] as Mode[])) {
        const label = `${load}${mode === 'precopy' ? '' : `, ${mode}`}${maxDowntimeMs === 300 ? '' : `, max downtime ${maxDowntimeMs} ms`}`;
        const b = (operation: string) => ({ bench: 'migrate', operation: `live migration ${MEM} MiB, ${label}: ${operation}`, unit: 'ms', accel });
        if (mode === 'postcopy' && uffd !== '1') {
          process.stderr.write(`migrate ${label}: not run, xeno's unprivileged QEMU needs sysctl vm.unprivileged_userfaultfd=1 for postcopy (now ${uffd})\n`);
          infoRow(b(`not run: vm.unprivileged_userfaultfd=${uffd} (postcopy needs 1)`), null, NaN);
          continue;
        }
        // QEMU 7.2 under TCG loses memory in these (src/migration/tcg-hazards.ts): xeno refuses postcopy and copies multifd paused
        if (accel === 'tcg' && mode !== 'precopy') {
          process.stderr.write(`migrate ${label}: not run under TCG, where xeno ${mode === 'postcopy' ? 'refuses postcopy' : 'copies a multifd migration paused'} (QEMU 7.2 lost guest memory)\n`);
          infoRow(b(`not run under TCG: ${mode === 'postcopy' ? 'refused' : 'copied paused'} (QEMU 7.2 loses memory)`), null, NaN);
          continue;
        }
        const rT: number[] = [];
        const rDown: number[] = [];
        const tT: number[] = [];
        const tDown: number[] = [];
        const xT: number[] = [];
        const xDown: number[] = [];
        const xGuestDown: number[] = [];
        const tQemu: number[] = [];
        const xQemu: number[] = [];
        const tStart: number[] = [];
        const tBytes: number[] = [];
        const xBytes: number[] = [];
        const rThrottle: number[] = [];
        const xThrottle: number[] = [];
        let rSwitched = 0;
        let xSwitched = 0;
        const phases: Record<string, number[]> = { handshake: [], prepare: [], stream: [], commit: [] };
        for (let r = 0; r < rounds; r++) {
          const rawSide = async () => {
            const [f, next] = await rawq!.migrate(raw!, mode, maxDowntimeMs);
            raw = next;
            rT.push(f.seconds * 1000);
            rDown.push(f.guestDowntimeMs);
            rThrottle.push(f.throttle);
            if (f.postcopy) rSwitched++;
          };
          // The same raw migration over TLS-PSK as xeno sets it up: how much of xeno's total is the encryption.
          const rawTlsSide = async () => {
            const [f, next] = await rawq!.migrate(raw!, mode, maxDowntimeMs, tlsDir);
            raw = next;
            tT.push(f.seconds * 1000);
            tDown.push(f.guestDowntimeMs);
            tQemu.push(f.qemuTotalMs);
            tStart.push(f.targetStartMs);
            tBytes.push(f.bytes / 1048576);
          };
          const xenoSide = async () => {
            const t0 = performance.now();
            const res = await ends[at]!.client.post<MigrateResult>('/v1/domains/bmig/migrate', {
              host: '127.0.0.1', port: ports[1 - at], live: true, maxDowntimeMs,
              ...(mode === 'postcopy' ? { postcopy: true } : {}), ...(parallelOf(mode) > 1 ? { parallel: parallelOf(mode) } : {}),
            }).catch((e: unknown) => {
              // What both daemons said, before their directories go.
              for (const [i, d] of ends.entries()) {
                process.stderr.write(`--- xenod ${i} log (tail) ---\n${d.log.split('\n').slice(-40).join('\n')}\n`);
                process.stderr.write(`--- bmig's console on xenod ${i} (tail) ---\n${d.consoleLog('bmig').split('\n').slice(-60).join('\n')}\n`);
              }
              throw e;
            });
            xT.push(performance.now() - t0);
            at = 1 - at;
            // A postcopy's guest-seen downtime is the switch to `running` there (QEMU 7.2's figure spans the whole postcopy phase).
            xDown.push(res.postcopy ? res.guestDowntimeMs ?? 0 : res.downtimeMs ?? 0);
            xGuestDown.push(res.guestDowntimeMs ?? 0);
            xQemu.push(res.totalTimeMs ?? NaN);
            xBytes.push((res.bytes ?? NaN) / 1048576);
            xThrottle.push(res.throttlePercent ?? 0);
            if (res.postcopy) xSwitched++;
            for (const [k, v] of Object.entries(res.phasesMs ?? {})) phases[k]?.push(v);
          };
          for (const side of r % 2 ? [xenoSide, rawTlsSide, rawSide] : [rawSide, rawTlsSide, xenoSide]) {
            await side();
            await sleep(1000);
          }
          process.stderr.write(`migrate ${label} round ${r + 1}/${rounds}: raw ${rT[r]!.toFixed(0)} ms (downtime ${rDown[r]!.toFixed(0)} ms) | raw TLS ${tT[r]!.toFixed(0)} ms | xeno ${xT[r]!.toFixed(0)} ms (downtime ${xDown[r]!.toFixed(0)} ms, guest ${xGuestDown[r]!.toFixed(0)} ms)\n`);
        }
        ratioRow(b('total'), median(rT), median(xT), 1.1);
        plusRow(b(mode === 'postcopy' ? 'downtime (switch to running there)' : 'QEMU downtime'), median(rDown), median(xDown), 10);
        infoRow(b('raw QEMU over TLS-PSK as xeno sets it up: total'), median(tT), median(xT));
        infoRow(b('raw QEMU over TLS-PSK: QEMU downtime'), median(tDown), median(xDown));
        infoRow(b('QEMU total-time, migrate -> completed (raw over TLS-PSK)'), median(tQemu), median(xQemu));
        infoRow(b('raw over TLS-PSK: target QEMU start -> QMP'), null, median(tStart));
        infoRow({ ...b('RAM sent (raw over TLS-PSK)'), unit: 'MiB' }, median(tBytes), median(xBytes));
        for (const [k, v] of Object.entries(phases)) if (v.length) infoRow(b(`xeno phase ${k}`), null, median(v));
        infoRow(b('xeno guest downtime incl. commit + resume'), null, median(xGuestDown));
        if (mode === 'postcopy') infoRow({ ...b('rounds that switched to postcopy'), unit: 'count' }, rSwitched, xSwitched);
        else infoRow({ ...b('vcpu throttle reached (auto-converge)'), unit: '%' }, median(rThrottle), median(xThrottle));
        report(`live migration of a ${MEM} MiB guest, load ${label} (${accel}, ${rounds} rounds, medians; raw = plain TCP, xeno = TLS-PSK)`, [
          ['raw QEMU: target start -> running there (ms)', median(rT)],
          ['xeno: migrate request -> running there (ms)', median(xT)],
          ['raw QEMU over TLS-PSK: target start -> running there (ms)', median(tT)],
          ['raw downtime (ms)', median(rDown)],
          ['xeno downtime (ms)', median(xDown)],
          ['raw / xeno cpu-throttle-percentage', `${median(rThrottle)} / ${median(xThrottle)}`],
          ['raw / xeno rounds switched to postcopy', `${rSwitched} / ${xSwitched} of ${rounds}`],
          ...Object.entries(phases).map(([k, v]): [string, number] => [`  xeno phase ${k} (ms)`, v.length ? median(v) : NaN]),
          ['xeno guest downtime incl. commit+resume (ms)', median(xGuestDown)],
        ]);
      }
    }
  } finally {
    if (raw && rawq) await rawq.stop(raw).catch(() => undefined);
    await rawq?.cgroup.remove();
    await Promise.all(ends.map((d) => d.cleanup()));
    rmSync(keyDir, { recursive: true, force: true });
    keyDone();
  }
}
