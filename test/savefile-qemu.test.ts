/**
 * saveVmToFile / loadVmFromFile against a real QEMU (TCG) booting the test guest: the guest's
 * heartbeat counter must carry on from where it was saved. Skipped when QEMU or the guest image
 * (bash guest/build.sh) is missing, which fails under CI.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { XenoError } from '../src/common/errors.js';
import { XENO_VERSION } from '../src/common/version.js';
import type { Vm } from '../src/hypervisor/backend.js';
import { QemuBackend, qemuPaths } from '../src/hypervisor/qemu/qemu-backend.js';
import type { DomainConfig } from '../src/model/domain-config.js';
import type { SaveHeader, SaveProgress } from '../src/toolstack/savefile/format.js';
import { loadVmFromFile, saveVmToFile } from '../src/toolstack/savefile/migrate-unix.js';
import { openSaveFile } from '../src/toolstack/savefile/reader.js';
import { partialPathFor } from '../src/toolstack/savefile/writer.js';
import { ramByteOffset, skipIf, skipOrFail } from './helpers/harness.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GUEST = path.join(ROOT, 'guest', 'out');
const haveGuest = existsSync(path.join(GUEST, 'vmlinuz')) && existsSync(path.join(GUEST, 'initrd.img'));
let haveQemu = true;
try {
  execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
} catch {
  haveQemu = false;
}
// scripts/test.sh installs QEMU and builds the guest: missing either under CI is a failure
const skip = skipIf(!haveGuest || !haveQemu, 'needs qemu-system-x86_64 and the test guest (bash guest/build.sh)');

/** The guest's serial line, kept as one transcript across QEMU processes. */
class Serial {
  text = '';
  private sock?: net.Socket;
  private waiters: Array<() => void> = [];

  async connect(socketPath: string): Promise<void> {
    this.sock?.destroy();
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        this.sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(socketPath);
          s.once('connect', () => resolve(s));
          s.once('error', reject);
        });
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    this.sock.on('data', (d: Buffer) => {
      this.text += d.toString('latin1');
      for (const w of this.waiters.splice(0)) w();
    });
    this.sock.on('error', () => undefined);
  }

  heartbeats(): number[] {
    return [...this.text.matchAll(/heartbeat (\d+)\r?\n/g)].map((m) => Number(m[1]));
  }

  last(): number {
    return this.heartbeats().at(-1) ?? 0;
  }

  /** Wait (bounded, not asserted on) until the guest has printed heartbeat > n. */
  async waitBeyond(n: number, timeoutMs = 120_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (this.last() <= n) {
      if (Date.now() > deadline) throw new Error(`no heartbeat beyond ${n} within ${timeoutMs} ms; serial: ${this.text.slice(-500)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 500);
      });
    }
    return this.last();
  }

  close(): void {
    this.sock?.destroy();
  }
}

describe('save and restore a real QEMU through Unix sockets', { skip }, () => {
  let dir: string;
  let backend: QemuBackend;
  const vms: Vm[] = [];
  const serial = new Serial();
  let domid = 0;
  let config: DomainConfig;
  let saveFile: string;
  let savedAt = 0;

  async function launch(incoming = false): Promise<Vm> {
    domid++;
    const runDir = path.join(dir, `r${domid}`);
    const vm = await backend.launch({
      domid, uuid: randomUUID(), config, runDir, machineType: backend.caps.machineType, nics: [], incoming,
      logFile: path.join(dir, `qemu-${domid}.log`),
    });
    vms.push(vm);
    return vm;
  }

  /** The saved guest restored into a fresh QEMU, run past its saved heartbeat, then paused. */
  async function restoredPaused(): Promise<Vm> {
    const info = await openSaveFile(saveFile);
    const vm = await launch(true);
    await serial.connect(qemuPaths(vm.runDir).serial);
    await loadVmFromFile(vm, saveFile, info);
    await vm.resume();
    await serial.waitBeyond(savedAt + 1);
    await vm.pause();
    return vm;
  }

  function headerFor(state: 'running' | 'paused'): SaveHeader {
    return {
      xenoVersion: XENO_VERSION, config, name: config.name, machineType: backend.caps.machineType,
      qemuVersion: backend.caps.qemuVersion, accel: backend.caps.accel, state, memoryMb: config.memory,
      maxmemMb: config.maxmem, created: new Date().toISOString(),
    };
  }

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'xeno-mig-'));
    backend = await QemuBackend.create({ binary: 'qemu-system-x86_64', accel: 'tcg', cacheDir: dir, tbSizeMb: 32 });
    const disk = path.join(dir, 'disk.ext4');
    writeFileSync(disk, readFileSync(path.join(GUEST, 'disk.ext4')));
    config = {
      name: 'mig-test', type: 'pvh', memory: 128, maxmem: 128, vcpus: 1, maxvcpus: 1,
      kernel: path.join(GUEST, 'vmlinuz'), ramdisk: path.join(GUEST, 'initrd.img'), extra: 'quiet',
      disks: [{ target: disk, format: 'raw', vdev: 'xvda', access: 'rw', devtype: 'disk' }], vifs: [],
      onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
    };
    saveFile = path.join(dir, 'guest.save');
  });

  after(async () => {
    serial.close();
    for (const vm of vms) await vm.kill(2000).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('saves a running guest to a file and QEMU ends in postmigrate', async () => {
    const vm = await launch();
    await serial.connect(qemuPaths(vm.runDir).serial);
    await serial.waitBeyond(2);
    await vm.pause();
    await new Promise((r) => setTimeout(r, 300)); // let in-flight serial output arrive
    savedAt = serial.last();
    const progress: SaveProgress[] = [];
    const res = await saveVmToFile(vm, saveFile, headerFor('running'), (p) => progress.push(p));
    assert.equal(await vm.runState(), 'postmigrate');
    assert.ok(!existsSync(partialPathFor(saveFile)));
    assert.ok(!existsSync(path.join(vm.runDir, 'save.sock')));
    const info = await openSaveFile(saveFile);
    assert.equal(info.payloadLength, res.payloadBytes);
    assert.equal(info.header.name, 'mig-test');
    assert.ok(res.payloadBytes > 1024 * 1024, `stream of ${res.payloadBytes} bytes`);
    assert.ok(res.size < 128 * 1024 * 1024, 'zero pages take no room');
    const last = progress.at(-1)!;
    assert.equal(last.bytes, res.payloadBytes);
    assert.equal(last.done, last.total);
    await vm.kill();
    assert.ok(vm.exited);
  });

  it('restores it into a new QEMU, paused until resumed, and the heartbeat carries on', async () => {
    const info = await openSaveFile(saveFile);
    const vm = await launch(true);
    await serial.connect(qemuPaths(vm.runDir).serial);
    const seen: SaveProgress[] = [];
    const res = await loadVmFromFile(vm, saveFile, info, (p) => seen.push(p));
    assert.equal(res.bytes, info.payloadLength);
    assert.equal(res.sha256, info.trailerSha256);
    assert.equal(seen.at(-1)!.done, info.payloadLength);
    assert.equal(await vm.runState(), 'paused');
    const before = serial.heartbeats().length;
    await vm.resume();
    await serial.waitBeyond(savedAt + 1);
    const all = serial.heartbeats();
    const after0 = all.slice(before);
    assert.equal(after0[0], savedAt + 1, `first heartbeat after restore follows ${savedAt}: ${after0.join(',')}`);
    // One transcript across both QEMUs: 1, 2, 3, ... with no restart from 1.
    all.forEach((n, i) => assert.equal(n, i + 1, `heartbeats ${all.join(',')}`));
    // Saving the restored guest again works (the stream it loaded is a full state).
    await vm.pause();
    await new Promise((r) => setTimeout(r, 300));
    savedAt = serial.last();
    await saveVmToFile(vm, saveFile, headerFor('running'));
    await vm.kill();
  });

  it('refuses a file whose payload was altered, after streaming it, and never runs it', async () => {
    const buf = readFileSync(saveFile);
    const info0 = await openSaveFile(saveFile);
    // Flip a byte inside a guest RAM page (the kernel's banner): QEMU loads the stream happily,
    // so only the checksum can refuse it; and the VM, though it holds the whole state, never ran.
    const at = ramByteOffset(buf, info0.payloadOffset, info0.payloadLength);
    buf[at] = buf[at]! ^ 0x20;
    const bad = path.join(dir, 'bad.save');
    writeFileSync(bad, buf);
    const info = await openSaveFile(bad);
    const vm = await launch(true);
    await serial.connect(qemuPaths(vm.runDir).serial);
    const beats = serial.heartbeats().length;
    await assert.rejects(loadVmFromFile(vm, bad, info), (e: unknown) => {
      assert.ok(e instanceof XenoError);
      assert.equal(e.code, 'SAVE_FORMAT', e.message);
      assert.match(e.message, /bad\.save is corrupted: its SHA-256 checksum does not match the trailer/);
      return true;
    });
    assert.equal(vm.exited, false, 'QEMU accepted the stream: the checksum alone refused it');
    assert.notEqual(await vm.runState(), 'running');
    await new Promise((r) => setTimeout(r, 1500)); // more than a heartbeat period
    assert.equal(serial.heartbeats().length, beats, 'the refused guest never ran');
    await vm.kill();
  });

  it('a save cancelled while its bytes move (a destroy) ends with the reason and leaves no partial file', async () => {
    const vm = await restoredPaused();
    const target = path.join(dir, 'cancelled.save');
    const ctl = new AbortController();
    const reason = new XenoError('BAD_STATE', 'save cancelled: the domain is being destroyed', { cancelled: true });
    let abortedAt = -1;
    const onProgress = (p: SaveProgress) => {
      if (abortedAt < 0 && p.bytes > 0) {
        abortedAt = p.bytes;
        ctl.abort(reason);
      }
    };
    await assert.rejects(saveVmToFile(vm, target, headerFor('running'), onProgress, { signal: ctl.signal }), (e: unknown) => e === reason);
    assert.ok(abortedAt > 0, 'cancelled once bytes were moving');
    assert.ok(!existsSync(target) && !existsSync(partialPathFor(target)), 'no file, partial or whole');
    await vm.kill();
  });

  it('a save that fails half-way (full disk) removes the partial file and the guest runs on', async (t) => {
    const mnt = path.join(dir, 'tiny');
    mkdirSync(mnt);
    if (process.getuid?.() !== 0) {
      skipOrFail(t, 'needs root to mount a tmpfs');
      return;
    }
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'xeno-test-tiny', mnt], { stdio: 'ignore' });
    try {
      const vm = await restoredPaused();
      const target = path.join(mnt, 'guest.save');
      await assert.rejects(saveVmToFile(vm, target, headerFor('running')), (e: unknown) => {
        assert.ok(e instanceof XenoError);
        assert.match(e.message, /no space left on device/);
        return true;
      });
      assert.deepEqual(readdirSync(mnt), []);
      const state = await vm.runState();
      assert.ok(state === 'paused' || state === 'running', state);
      const n = serial.last();
      await vm.resume();
      await serial.waitBeyond(n + 1);
      assert.equal(await vm.runState(), 'running');
      await vm.kill();
    } finally {
      execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
    }
  });
});
