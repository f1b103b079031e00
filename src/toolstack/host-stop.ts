/**
 * xendomains for xeno: what happens to the guests when the host shuts down (`xeno host-stop`, run
 * by xendomains.service's ExecStop), and how they come back at the next start.
 *
 * - save: each running guest is saved to STATE_DIR/host-stop/NAME.save; beside it NAME.json
 *   records each disk's size, mtime and inode as they were once QEMU had quit. At the next start the
 *   guest is restored only if every disk is still exactly that file: an old memory image is never
 *   resumed over a disk that changed since (that would corrupt its filesystem); the save is kept
 *   and the refusal logged. A guest whose save fails is shut down cleanly instead.
 * - shutdown: each guest is shut down cleanly (destroyed once the timeout is over); NAME.json
 *   records its config, and the next start boots it again.
 * - leave: nothing (the host's own shutdown kills them).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../common/errors.js';
import type { HostStopMode } from '../model/daemon-config.js';
import type { DomainConfig } from '../model/domain-config.js';
import type { Definitions } from './definitions.js';
import type { SaveRestore } from './save-restore.js';
import type { DomainRecord } from './store.js';
import type { Toolstack } from './toolstack.js';
import { writeDurable } from './savefile/writer.js';

export interface DiskPrint {
  path: string;
  size: number;
  mtimeMs: number;
  ino: number;
  dev: number;
}

interface HostStopRecord {
  name: string;
  kind: 'restore' | 'start';
  /** kind restore: the save file. */
  file?: string;
  disks?: DiskPrint[];
  /** kind start: the config to boot again (a definition of the same name wins). */
  config?: DomainConfig;
  at: string;
}

export interface HostStopResult {
  name: string;
  ok: boolean;
  action: 'saved' | 'shut down' | 'destroyed' | 'left' | 'restored' | 'started' | 'kept' | 'failed';
  message: string;
}

export function diskPrints(c: DomainConfig): DiskPrint[] {
  return c.disks
    .filter((d) => d.target)
    .map((d) => {
      const s = statSync(d.target);
      return { path: d.target, size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, dev: s.dev };
    });
}

/** Why a disk is no longer what the save was taken with, or null. */
export function diskChange(p: DiskPrint): string | null {
  let s;
  try {
    s = statSync(p.path);
  } catch {
    return `disk ${p.path} is gone`;
  }
  if (s.ino !== p.ino || s.dev !== p.dev) return `disk ${p.path} is another file now (inode ${s.ino}, was ${p.ino})`;
  if (s.size !== p.size) return `disk ${p.path} changed size (${s.size} bytes, was ${p.size})`;
  if (s.mtimeMs !== p.mtimeMs) return `disk ${p.path} was modified since the save (${new Date(s.mtimeMs).toISOString()}, saved at ${new Date(p.mtimeMs).toISOString()})`;
  return null;
}

export class HostStop {
  constructor(
    private readonly ts: Toolstack,
    private readonly sr: SaveRestore,
    private readonly defs: Definitions,
  ) {}

  get dir(): string {
    return path.join(this.ts.deps.config.stateDir, 'host-stop');
  }

  private recordFile(name: string): string {
    return path.join(this.dir, `${name}.json`);
  }

  private write(r: HostStopRecord): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    writeDurable(this.recordFile(r.name), JSON.stringify(r, null, 2));
  }

  /** The host is going down: save, shut down or leave every guest (two at a time). */
  async stop(mode: HostStopMode, timeoutS: number): Promise<HostStopResult[]> {
    const guests = this.ts.deps.store.all().filter((r) => r.state === 'running' || r.state === 'paused');
    if (mode === 'leave') return guests.map((r) => ({ name: r.name, ok: true, action: 'left', message: 'left running' }));
    const deadline = Date.now() + timeoutS * 1000;
    const todo = [...guests];
    const results: HostStopResult[] = [];
    const worker = async () => {
      for (let rec = todo.shift(); rec; rec = todo.shift()) results.push(await this.stopOne(rec, mode, deadline));
    };
    await Promise.all([worker(), worker()]);
    for (const r of results) this.ts.event(null, 'host-stop', `host stop: ${r.name} ${r.action}: ${r.message}`);
    return results;
  }

  private async stopOne(rec: DomainRecord, mode: HostStopMode, deadline: number): Promise<HostStopResult> {
    if (mode === 'save') {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const file = path.join(this.dir, `${rec.name}.save`);
      try {
        await this.sr.save(String(rec.id), file);
        // QEMU has quit: the disks are as the saved memory expects them.
        this.write({ name: rec.name, kind: 'restore', file, disks: diskPrints(rec.config), at: new Date().toISOString() });
        return { name: rec.name, ok: true, action: 'saved', message: `saved to ${file}` };
      } catch (e) {
        if (!this.ts.deps.store.get(rec.id)) {
          return { name: rec.name, ok: false, action: 'failed', message: `save failed after the guest was freed: ${errorMessage(e)}` };
        }
        const shut = await this.shutdownOne(rec, deadline);
        return { ...shut, message: `save failed (${errorMessage(e)}); ${shut.message}` };
      }
    }
    return this.shutdownOne(rec, deadline);
  }

  private async shutdownOne(rec: DomainRecord, deadline: number): Promise<HostStopResult> {
    // Recorded first: a host that dies during the shutdown still boots the guest next time.
    this.write({ name: rec.name, kind: 'start', config: rec.config, at: new Date().toISOString() });
    try {
      await this.ts.shutdown(String(rec.id), true, Math.max(1000, deadline - Date.now()));
      if (this.ts.deps.store.get(rec.id)) await this.ts.destroy(String(rec.id)); // preserved: free it
      return { name: rec.name, ok: true, action: 'shut down', message: 'shut down cleanly; starts again at the next start' };
    } catch (e) {
      await this.ts.destroy(String(rec.id)).catch(() => undefined);
      return { name: rec.name, ok: false, action: 'destroyed', message: `no clean shutdown (${errorMessage(e)}): destroyed; starts again at the next start` };
    }
  }

  /** xenod starting: bring back what the last host stop saved or shut down. */
  async resume(): Promise<HostStopResult[]> {
    let names: string[];
    try {
      names = readdirSync(this.dir).filter((f) => f.endsWith('.json')).sort();
    } catch {
      return [];
    }
    const results: HostStopResult[] = [];
    for (const n of names) {
      let r: HostStopRecord;
      try {
        r = JSON.parse(readFileSync(path.join(this.dir, n), 'utf8')) as HostStopRecord;
      } catch (e) {
        results.push({ name: n, ok: false, action: 'kept', message: `unreadable record ${n}: ${errorMessage(e)}` });
        continue;
      }
      const res = await this.resumeOne(r);
      this.ts.event(null, res.ok ? 'host-start' : 'host-start-failed', `host start: ${res.name} ${res.action}: ${res.message}`);
      results.push(res);
    }
    return results;
  }

  private async resumeOne(r: HostStopRecord): Promise<HostStopResult> {
    const done = () => rmSync(this.recordFile(r.name), { force: true });
    if (this.ts.deps.store.byName(r.name)) {
      done();
      return { name: r.name, ok: true, action: 'kept', message: 'already running' };
    }
    if (r.kind === 'start') {
      try {
        const def = this.defs.store.get(r.name);
        const rec = await this.ts.create(def?.config ?? r.config!);
        done();
        return { name: r.name, ok: true, action: 'started', message: `started as domain ${rec.id}` };
      } catch (e) {
        return { name: r.name, ok: false, action: 'kept', message: `not started: ${errorMessage(e)}; ${this.recordFile(r.name)} kept` };
      }
    }
    const file = r.file!;
    if (!existsSync(file)) {
      done();
      return { name: r.name, ok: false, action: 'failed', message: `its save file ${file} is gone` };
    }
    const changed = (r.disks ?? []).map(diskChange).find((x) => x !== null);
    if (changed) {
      return { name: r.name, ok: false, action: 'kept', message: `not restored: ${changed}; resuming the saved memory over it would corrupt it. The save is kept in ${file}` };
    }
    try {
      const res = await this.sr.restore(file);
      rmSync(file, { force: true });
      done();
      return { name: r.name, ok: true, action: 'restored', message: `restored as domain ${res.id} (${res.state})` };
    } catch (e) {
      return { name: r.name, ok: false, action: 'kept', message: `not restored: ${errorMessage(e)}; the save is kept in ${file}` };
    }
  }
}
