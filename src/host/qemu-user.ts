/**
 * The unprivileged user every QEMU runs as (`xeno-qemu-user`, default xeno-qemu): created on
 * xenod's first start, in the kvm group when there is one, and given exactly the files its domain
 * needs through POSIX ACLs (setfacl, from the acl package): its disks (rw or r as the config says),
 * kernel and ramdisk (r), and search (x) on the directories above them that it could not cross.
 * Each domain's grants, with every file's ACL as it was before, are kept in its run dir
 * (qemu-access.json), so the ACLs are put back at stop even by a later xenod. Files the user can
 * already reach through their `other` bits get nothing. The run dirs themselves are prepared by
 * the QEMU backend (group-owned by the user's group); this module only opens the way to them.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { XenoError, errorMessage } from '../common/errors.js';
import type { QemuRunAs } from '../hypervisor/qemu/qemu-backend.js';
import type { DomainConfig } from '../model/domain-config.js';
import type { DomainHooks } from '../toolstack/hooks.js';
import { backingFilesOf } from './image-chain.js';

const ACCESS_FILE = 'qemu-access.json';
const S_IXOTH = 0o001;
const S_IWOTH = 0o002;
const S_IROTH = 0o004;

type Perm = 'r' | 'rw' | 'x';

interface Grant {
  path: string;
  perm: Perm;
  /** `getfacl` of the file before the first grant, restored at stop. */
  before: string;
}

function run(cmd: string, args: string[], input?: string): string {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.error) throw new XenoError('HOST_ERROR', `cannot run ${cmd} (${cmd === 'setfacl' || cmd === 'getfacl' ? 'install the acl package' : 'is it installed?'}): ${r.error.message}`);
  if (r.status !== 0) throw new XenoError('HOST_ERROR', `${cmd} ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

function lookup(name: string): { uid: number; gid: number } | null {
  const r = spawnSync('getent', ['passwd', name], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  const f = r.stdout.trim().split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

function groupExists(name: string): boolean {
  return spawnSync('getent', ['group', name]).status === 0;
}

/**
 * The QEMU user, created if missing (a system user with its own group, no home, no shell). Several
 * xenods may start at once: a useradd that loses the race is fine if the user is there after it.
 */
export function ensureQemuUser(name: string): QemuRunAs {
  let u = lookup(name);
  for (let attempt = 0; !u && attempt < 20; attempt++) {
    spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', '--comment', 'xeno QEMU processes', name]);
    u = lookup(name);
    if (!u) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100); // another xenod's useradd holds the lock
  }
  if (!u) throw new XenoError('HOST_ERROR', `cannot create the QEMU user ${name} (useradd failed)`);
  if (u.uid === 0 || u.gid === 0) throw new XenoError('CONFIG_INVALID', `xeno-qemu-user ${name} has uid or gid 0: QEMU must run unprivileged`);
  // /dev/kvm is group kvm: QEMU needs it under KVM (the accelerator probe itself runs as root).
  if (groupExists('kvm')) {
    const groups = run('id', ['-nG', name]).trim().split(/\s+/);
    if (!groups.includes('kvm')) run('usermod', ['-a', '-G', 'kvm', name]);
  }
  return { user: name, uid: u.uid, gid: u.gid };
}

/** Can `other` (a user with no special entry) do `perm` on this inode? */
function otherMay(mode: number, perm: Perm): boolean {
  if (perm === 'x') return (mode & S_IXOTH) !== 0;
  if (perm === 'r') return (mode & S_IROTH) !== 0;
  return (mode & S_IROTH) !== 0 && (mode & S_IWOTH) !== 0;
}

/** Directories between / and `file` (exclusive) that the user's `other` bits do not let it cross. */
function closedAncestors(file: string, who: QemuRunAs): string[] {
  const out: string[] = [];
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const st = statSync(dir);
    if (st.uid !== who.uid && !otherMay(st.mode, 'x')) out.push(dir);
    if (dir === path.dirname(dir)) break;
  }
  return out.reverse();
}

function addEntry(file: string, who: QemuRunAs, perm: Perm): void {
  run('setfacl', ['-m', `u:${who.uid}:${perm}`, '--', file]);
}

function getfacl(file: string): string {
  return run('getfacl', ['-p', '--', file]);
}

/**
 * Search permission on xenod's own run directory and the ones above it, once at start: QEMU creates
 * its sockets there and connects to xenod's save socket. Kept (it is xenod's own tree).
 */
export function openRunTree(runRoot: string, who: QemuRunAs): void {
  mkdirSync(runRoot, { recursive: true, mode: 0o700 });
  for (const dir of [...closedAncestors(runRoot, who), runRoot]) {
    if (!otherMay(statSync(dir).mode, 'x')) addEntry(dir, who, 'x');
  }
}

/**
 * /dev/net/tun, which QEMU opens to attach to its taps (owned by the user, so it may, without
 * CAP_NET_ADMIN). It is usually 0666; on hosts where it is root's only, an ACL entry lets the user
 * open it (opening it grants nothing by itself: creating or taking someone else's tap still needs
 * the capability). devtmpfs forgets it at reboot, so every start checks again.
 */
export function openTunDevice(who: QemuRunAs, dev = '/dev/net/tun'): void {
  if (!existsSync(dev) || otherMay(statSync(dev).mode, 'rw')) return;
  addEntry(dev, who, 'rw');
}

/**
 * A guest that left over shared storage: its disks' grants (and their backing chains') are the
 * target's now, so they are dropped from this domain's record without being put back; otherwise the
 * source's stop would strip the QEMU user's entry the target's QEMU relies on (the same file, the
 * same user), e.g. to reopen a backing file read-write for a snapshot merge.
 */
export function handOverGrants(runDir: string, c: DomainConfig): void {
  const disks = filesOf({ ...c, kernel: undefined, ramdisk: undefined }).map((f) => f.path);
  // the directories on the way to them too (their search entries)
  const theirs = (p: string) => disks.some((f) => f === p || f.startsWith(p.endsWith('/') ? p : `${p}/`));
  const grants = readGrants(runDir);
  const kept = grants.filter((g) => !theirs(g.path));
  if (kept.length !== grants.length) writeFileSync(path.join(runDir, ACCESS_FILE), JSON.stringify(kept), { mode: 0o600 });
}

/** What a domain's QEMU opens on the host, and how. */
export function filesOf(c: DomainConfig): Array<{ path: string; perm: Perm }> {
  const out: Array<{ path: string; perm: Perm }> = [];
  for (const f of [c.kernel, c.ramdisk]) if (f) out.push({ path: path.resolve(f), perm: 'r' });
  for (const d of c.disks) {
    if (!d.target) continue; // an empty cdrom
    const ro = d.access === 'ro' || d.devtype === 'cdrom';
    out.push({ path: path.resolve(d.target), perm: ro ? 'r' : 'rw' });
    // A snapshot overlay's backing files: read at boot, written when a snapshot delete merges into them.
    for (const b of backingFilesOf(d.target, d.format)) out.push({ path: path.resolve(b), perm: ro ? 'r' : 'rw' });
  }
  return out;
}

function readGrants(runDir: string): Grant[] {
  try {
    return JSON.parse(readFileSync(path.join(runDir, ACCESS_FILE), 'utf8')) as Grant[];
  } catch {
    return [];
  }
}

const union = (a: Perm, b: Perm): Perm => (a === b ? a : a === 'x' ? b : b === 'x' ? a : 'rw');

/**
 * Grants one domain's QEMU its files; records them in its run dir. A file another domain of this
 * xenod holds keeps that domain's "before", and is put back only when the last holder stops.
 */
export class QemuAccess {
  constructor(
    readonly who: QemuRunAs,
    /** STATE_DIR/run: every domain's run dir is below it. */
    private readonly runRoot: string,
  ) {}

  private othersHolding(runDir: string): Map<string, Grant> {
    const held = new Map<string, Grant>();
    if (!existsSync(this.runRoot)) return held;
    for (const e of readdirSync(this.runRoot)) {
      const dir = path.join(this.runRoot, e);
      if (dir === runDir) continue;
      for (const g of readGrants(dir)) held.set(g.path, g);
    }
    return held;
  }

  /**
   * Synchronous on purpose: one domain's read-modify-write of an ACL never interleaves another's.
   * `extend`: a hot-plug (block-attach, cd-insert) adds to the grants the domain holds already.
   */
  grant(runDir: string, c: DomainConfig, extend = false): void {
    const grants: Grant[] = extend ? readGrants(runDir) : [];
    const had = new Map(grants.map((g) => [g.path, g.perm] as const));
    try {
      const want = new Map<string, Perm>();
      for (const f of filesOf(c)) {
        const st = statSync(f.path);
        if (st.uid !== this.who.uid && !otherMay(st.mode, f.perm)) want.set(f.path, union(want.get(f.path) ?? f.perm, f.perm));
        for (const dir of closedAncestors(f.path, this.who)) if (!want.has(dir)) want.set(dir, 'x');
      }
      const others = this.othersHolding(runDir);
      for (const [file, perm] of want) {
        if (had.get(file) === perm || had.get(file) === 'rw') continue;
        const held = others.get(file);
        const before = held?.before ?? getfacl(file);
        grants.push({ path: file, perm, before });
        writeFileSync(path.join(runDir, ACCESS_FILE), JSON.stringify(grants), { mode: 0o600 });
        addEntry(file, this.who, held ? union(held.perm, perm) : perm);
      }
    } catch (e) {
      if (!extend) this.restore(runDir);
      throw new XenoError('HOST_ERROR', `cannot give the QEMU user ${this.who.user} access to its files: ${errorMessage(e)}`);
    }
  }

  /**
   * Grants a running domain's QEMU files it opens later (a snapshot's overlay), added to its
   * record so they are put back at stop like the rest.
   */
  add(runDir: string, files: Array<{ path: string; perm: Perm }>): void {
    const grants = readGrants(runDir);
    const others = this.othersHolding(runDir);
    try {
      for (const f of files) {
        if (grants.some((g) => g.path === f.path)) continue;
        const st = statSync(f.path);
        if (st.uid === this.who.uid || otherMay(st.mode, f.perm)) continue;
        const held = others.get(f.path);
        grants.push({ path: f.path, perm: f.perm, before: held?.before ?? getfacl(f.path) });
        writeFileSync(path.join(runDir, ACCESS_FILE), JSON.stringify(grants), { mode: 0o600 });
        addEntry(f.path, this.who, held ? union(held.perm, f.perm) : f.perm);
      }
    } catch (e) {
      throw new XenoError('HOST_ERROR', `cannot give the QEMU user ${this.who.user} access to ${files.map((f) => f.path).join(', ')}: ${errorMessage(e)}`);
    }
  }

  /**
   * A running domain closed files (block-detach, cd-eject): the ACLs of those its config `next` no
   * longer needs (nor a directory on the way to one it does) are put back as they were, unless
   * another domain still holds them.
   */
  revoke(runDir: string, next: DomainConfig): void {
    const needed = filesOf(next).map((f) => f.path);
    const keep = (p: string) => needed.some((f) => f === p || f.startsWith(p.endsWith('/') ? p : `${p}/`));
    const grants = readGrants(runDir);
    const gone = grants.filter((g) => !keep(g.path));
    if (gone.length === 0) return;
    const failed = this.putBack(runDir, gone);
    writeFileSync(path.join(runDir, ACCESS_FILE), JSON.stringify(grants.filter((g) => keep(g.path))), { mode: 0o600 });
    if (failed.length) throw new XenoError('HOST_ERROR', `cannot restore ACLs: ${failed.join('; ')}`);
  }

  /** Puts back every ACL this domain changed (unless another domain still holds the file). */
  restore(runDir: string): void {
    const grants = readGrants(runDir);
    if (grants.length === 0) return;
    const failed = this.putBack(runDir, grants);
    writeFileSync(path.join(runDir, ACCESS_FILE), '[]', { mode: 0o600 });
    if (failed.length) throw new XenoError('HOST_ERROR', `cannot restore ACLs: ${failed.join('; ')}`);
  }

  /** Puts back the ACLs before these grants (newest first), skipping files another domain still holds: the failures. */
  private putBack(runDir: string, grants: ReturnType<typeof readGrants>): string[] {
    const others = this.othersHolding(runDir);
    const failed: string[] = [];
    for (const g of [...grants].reverse()) {
      if (others.has(g.path) || !existsSync(g.path)) continue;
      try {
        run('setfacl', ['--set-file=-', '--', g.path], g.before);
      } catch (e) {
        failed.push(errorMessage(e));
      }
    }
    return failed;
  }

  hooks(): Partial<DomainHooks> {
    return {
      beforeLaunch: async (rec) => {
        mkdirSync(rec.runDir, { recursive: true, mode: 0o700 });
        this.grant(rec.runDir, rec.config);
        return { nics: [] };
      },
      beforeHotplug: async (rec, next) => this.grant(rec.runDir, next, true),
      afterUnplug: async (rec, next) => this.revoke(rec.runDir, next),
      afterStop: async (rec) => this.restore(rec.runDir),
    };
  }
}
