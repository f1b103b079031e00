/**
 * One validator for every door, through the real API of a real xenod: a raw `config` on
 * POST /v1/domains, cfgText, a crafted save file (header and its checksums fixed up, so only the
 * validator can stop it) and runtime changes (mem-set, mem-max, vcpu-set, network-attach). After
 * every refusal: a 4xx naming the field, no new QEMU, no domain record, nothing new in the run
 * dir, xenod still answering, the running guest's config unchanged.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { linkSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiError } from '../src/client/client.js';
import { exchange } from '../src/client/wire.js';
import type { DomainInfo } from '../src/model/api.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import { encodeHeader, encodeTrailer, type SaveHeader } from '../src/toolstack/savefile/format.js';
import { openSaveFile } from '../src/toolstack/savefile/reader.js';
import { GUEST, TestDaemon, guestCfg, pgrep } from './helpers/harness.js';

/** A ready DomainConfig that creates a working guest (the control for the raw-config door). */
function rawConfig(name: string): DomainConfig {
  return {
    name, type: 'pv', memory: 128, maxmem: 128, vcpus: 1, maxvcpus: 1, kernel: GUEST.kernel, ramdisk: GUEST.ramdisk,
    extra: 'quiet', disks: [], vifs: [], onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
  };
}

/** Rewrites a save file's header, with the header's own checksum and the trailer's whole-file hash redone. */
async function craftSave(src: string, dst: string, change: (h: SaveHeader) => void): Promise<void> {
  const info = await openSaveFile(src);
  const h = structuredClone(info.header);
  change(h);
  const buf = readFileSync(src);
  const payload = buf.subarray(info.payloadOffset, info.payloadOffset + info.payloadLength);
  const body = Buffer.concat([encodeHeader(h), payload]);
  writeFileSync(dst, Buffer.concat([body, encodeTrailer(payload.length, createHash('sha256').update(body).digest())]));
}

describe('one validator for every door (real xenod)', () => {
  const d = new TestDaemon({ isolated: true });
  let base: DomainConfig;
  let saved: string;

  /** What must not change across a refusal. */
  async function snapshot(): Promise<{ names: string[]; qemus: number[]; runDirs: string[]; v1: unknown }> {
    const { domains } = await d.client.get<{ domains: DomainInfo[] }>('/v1/domains');
    let runDirs: string[] = [];
    try {
      runDirs = readdirSync(path.join(d.stateDir, 'run')).sort();
    } catch {
      /* none yet */
    }
    const v1 = (await d.client.get<{ config: unknown }>('/v1/domains/v1/config')).config;
    return { names: domains.map((x) => x.name).sort(), qemus: (await pgrep(`${d.stateDir}/run/`)).sort(), runDirs, v1 };
  }

  /** The call fails with a 4xx whose message matches `re`, and nothing changed. */
  async function refused(what: string, call: () => Promise<unknown>, re: RegExp): Promise<void> {
    const s0 = await snapshot();
    let err: unknown;
    try {
      await call();
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ApiError, `${what}: expected an API error, got ${err === undefined ? 'success' : String(err)}`);
    assert.ok(err.status >= 400 && err.status < 500, `${what}: expected a 4xx, got ${err.status} ${err.code}: ${err.message}`);
    assert.match(err.message, re, `${what}: ${err.message}`);
    assert.deepEqual(await snapshot(), s0, `${what}: nothing started, recorded or changed`);
  }

  /** POST a body given as JSON text, with the client's error mapping. */
  async function rawPost(p: string, body: string): Promise<unknown> {
    const res = await exchange(d.socket, { method: 'POST', path: p, body });
    const parsed = JSON.parse(res.body.toString('utf8')) as { error?: { code: string; message: string } };
    if (res.status >= 400) throw new ApiError(res.status, parsed.error?.code ?? '', parsed.error?.message ?? '');
    return parsed;
  }

  const create = (config: unknown) => () => d.client.post('/v1/domains', { config });
  const createText = (cfgText: string) => () => d.client.post('/v1/domains', { cfgText, cfgFile: 'bad.cfg' });

  before(async () => {
    await d.start();
    // The control: a raw config that passes creates a guest (v1 stays for the runtime and save doors).
    base = rawConfig('v1');
    await d.client.post('/v1/domains', { config: base });
    await d.waitConsole('v1', /heartbeat 1\r?\n/);
    saved = path.join(d.dir, 'v1.save');
    await d.client.post('/v1/domains/v1/save', { file: saved, checkpoint: true });
  });
  after(async () => {
    await d.cleanup();
  });

  it('a raw config on POST /v1/domains: every field checked, name, ranges, charsets, types, shape', async () => {
    const bad = (over: Record<string, unknown>) => create({ ...base, name: 'x1', ...over });
    const disk = (over: Record<string, unknown>) => [{ target: GUEST.disk, format: 'raw', vdev: 'xvda', access: 'ro', devtype: 'disk', ...over }];
    await refused('all-digit name', bad({ name: '7' }), /name.*'7'.*digits/);
    await refused('Domain-0', bad({ name: 'Domain-0' }), /Domain-0/);
    await refused('name charset', bad({ name: 'a b' }), /name/);
    await refused('huge vcpus', bad({ vcpus: 100_000_000, maxvcpus: 100_000_000 }), /vcpus.*128/);
    await refused('vcpus above maxvcpus', bad({ vcpus: 2, maxvcpus: 1 }), /vcpus.*maxvcpus/);
    await refused('maxvcpus as an option string', bad({ maxvcpus: '4,x=y' }), /maxvcpus.*integer/);
    await refused('memory 0', bad({ memory: 0 }), /memory.*below the 64 MiB floor/);
    await refused('maxmem -1', bad({ maxmem: -1 }), /maxmem/);
    await refused('memory above maxmem', bad({ memory: 256, maxmem: 128 }), /memory.*maxmem/);
    await refused('memory as a string', bad({ memory: '128' }), /memory.*integer/);
    await refused('vdev with a QEMU option', bad({ disks: disk({ vdev: 'xvda,addr=0x1f' }) }), /disks\[0\]\.vdev/);
    await refused('disk target with a comma', bad({ disks: disk({ target: `${GUEST.disk},readonly=off` }) }), /disks\[0\]\.target/);
    await refused('disk = xenod database', bad({ disks: disk({ target: path.join(d.stateDir, 'xeno.db') }) }), /disks\[0\]\.target.*state/);
    await refused('disk = xenod log', bad({ disks: disk({ target: path.join(d.stateDir, 'xenod.log') }) }), /disks\[0\]\.target.*state/);
    const link = path.join(d.dir, 'innocent.img');
    symlinkSync(path.join(d.stateDir, 'xeno.db'), link);
    await refused('disk = a symlink to xenod database', bad({ disks: disk({ target: link, access: 'rw' }) }), /disks\[0\]\.target.*innocent\.img is xenod's own state/);
    const hard = path.join(d.dir, 'hard.img');
    linkSync(path.join(d.stateDir, 'xenod.log'), hard);
    await refused('disk = a hard link to xenod log', bad({ disks: disk({ target: hard }) }), /disks\[0\]\.target.*hard\.img is xenod's own state/);
    await refused('kernel = xenod database', bad({ kernel: path.join(d.stateDir, 'xeno.db') }), /kernel.*state/);
    await refused('unknown disk format', bad({ disks: disk({ format: 'raw,file.locking=off' }) }), /disks\[0\]\.format/);
    await refused('extra with a newline', bad({ extra: 'quiet\ninit=/bin/sh' }), /extra.*control/);
    await refused('kernel path with a newline', bad({ kernel: `${GUEST.kernel}\n` }), /kernel/);
    await refused('hostname with a newline', bad({ hostname: 'a\nb' }), /hostname/);
    await refused('an object where a string is expected', bad({ extra: { a: 1 } }), /extra.*string/);
    await refused('an unknown field', bad({ qemuArgs: ['-monitor', 'stdio'] }), /qemuArgs.*unknown/);
    await refused('vif mac', bad({ vifs: [{ devid: 0, mac: 'zz:zz:zz:zz:zz:zz' }] }), /vifs\[0\]\.mac/);
    await refused('vif model with an option', bad({ vifs: [{ devid: 0, model: 'e1000,romfile=/etc/shadow' }] }), /vifs\[0\]\.model/);
    await refused('vif bridge with a newline', bad({ vifs: [{ devid: 0, bridge: 'br0\nx' }] }), /vifs\[0\]\.bridge/);
    await refused('vif ip', bad({ vifs: [{ devid: 0, ip: '10.0.0.1; drop' }] }), /vifs\[0\]\.ip/);
    await refused('vif rate', bad({ vifs: [{ devid: 0, rate: '1Mb/s burst 1' }] }), /vifs\[0\]\.rate/);
    await refused('vif script', bad({ vifs: [{ devid: 0, script: '/tmp/evil' }] }), /vifs\[0\]\.script/);
    await refused('vifname', bad({ vifs: [{ devid: 0, vifname: '0bad' }] }), /vifs\[0\]\.vifname/);
    await refused('cpus', bad({ cpus: '0;reboot' }), /cpus/);
    await refused('uuid', bad({ uuid: 'not-a-uuid' }), /uuid/);
    await refused('not an object', create([1, 2]), /config/);
    // JSON.stringify would overflow on this side: the body is written by hand.
    const deepBody = `{"config":${JSON.stringify({ ...base, name: 'x1' }).replace('"extra":"quiet"', `"extra":${'['.repeat(100_000)}"x"${']'.repeat(100_000)}`)}}`;
    await refused('a 100,000-deep value', () => rawPost('/v1/domains', deepBody), /extra: expected a string/);
    await refused('lifecycle action', bad({ onCrash: 'reboot-the-host' }), /onCrash/);
    // The dry run goes through the same validator.
    await refused('dry run', () => d.client.post('/v1/domains', { config: { ...base, name: '7' }, dryRun: true }), /digits/);
  });

  it('cfgText: the same validator after the parser, and deep nesting is a syntax error', async () => {
    await refused('100,000-deep list', createText(`name = "deep"\nvif = ${'['.repeat(100_000)}${']'.repeat(100_000)}\n`), /bad\.cfg:2:\d+: .*nest/);
    await refused('memory below the floor', createText(guestCfg('t1').replace('memory = 128', 'memory = 32')), /memory.*64 MiB floor/);
    await refused('vcpus above the limit', createText(guestCfg('t1').replace('vcpus = 1', 'vcpus = 200')), /vcpus/);
    await refused('disk = xenod database', createText(guestCfg('t1', { disk: `[ '${d.stateDir}/xeno.db,raw,xvda,rw' ]` })), /target.*state/);
    await refused('extra with a newline', createText(guestCfg('t1').replace('extra = "quiet"', 'extra = "quiet\\ninit=/bin/sh"')), /extra.*control/);
  });

  it('a save file whose header was rewritten (checksums fixed up) is refused by the validator', async () => {
    // The control: the same crafting with only a new name restores (nothing but the validator can refuse).
    const good = path.join(d.dir, 'good.save');
    await craftSave(saved, good, (h) => {
      h.name = 'v2';
      h.config.name = 'v2';
      delete h.uuid;
      delete h.config.uuid;
    });
    await d.client.post('/v1/restore', { file: good });
    await d.client.post('/v1/domains/v2/destroy');

    const cases: Array<[string, (h: SaveHeader) => void, RegExp]> = [
      ['all-digit name', (h) => (h.name = '7'), /name.*digits/],
      ['huge vcpus', (h) => Object.assign(h.config, { vcpus: 100_000_000, maxvcpus: 100_000_000 }), /vcpus/],
      ['vdev with an option', (h) => (h.config.disks = [{ target: GUEST.disk, format: 'raw', vdev: 'xvda,addr=0x1f', access: 'ro', devtype: 'disk' }]), /vdev/],
      ['maxvcpus string', (h) => Object.assign(h.config, { maxvcpus: '4,x=y' }), /maxvcpus/],
      ['memory 0', (h) => Object.assign(h.config, { memory: 0 }), /memory/],
      ['unknown config field', (h) => Object.assign(h.config, { qemuArgs: ['-S'] }), /qemuArgs/],
      ['maxmemMb fraction', (h) => (h.maxmemMb = 128.5), /maxmem/],
      ['disk = xenod database', (h) => (h.config.disks = [{ target: path.join(d.stateDir, 'xeno.db'), format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }]), /state/],
    ];
    for (const [what, change, re] of cases) {
      const f = path.join(d.dir, 'crafted.save');
      await craftSave(saved, f, (h) => {
        h.name = 'v3';
        h.config.name = 'v3';
        delete h.uuid;
        delete h.config.uuid;
        change(h);
      });
      await refused(`save file: ${what}`, () => d.client.post('/v1/restore', { file: f }), re);
    }
  });

  it('runtime changes go through the validator: mem-set, mem-max, vcpu-set, network-attach', async () => {
    await refused('mem-set 0', () => d.client.post('/v1/domains/v1/mem-set', { memory: 0 }), /floor/);
    await refused('mem-set option string', () => d.client.post('/v1/domains/v1/mem-set', { memory: '4,x=y' }), /mem-set/);
    await refused('mem-max -1', () => d.client.post('/v1/domains/v1/mem-max', { maxmem: -1 }), /mem-max/);
    await refused('vcpu-set huge', () => d.client.post('/v1/domains/v1/vcpu-set', { vcpus: 100_000_000 }), /maxvcpus/);
    await refused('network-attach bad mac', () => d.client.post('/v1/domains/v1/network-attach', { spec: 'mac=zz:16:3e:00:00:01' }), /mac/);
    await refused('network-attach model option', () => d.client.post('/v1/domains/v1/network-attach', { spec: 'model=e1000;romfile=x' }), /model/);
    await refused('network-attach vifname', () => d.client.post('/v1/domains/v1/network-attach', { spec: 'vifname=forward' }), /vifname/);
  });
});
