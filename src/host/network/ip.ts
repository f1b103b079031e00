/**
 * Thin typed wrappers over iproute2 (`ip`, `tc`), nftables (`nft`) and sysctls. Every command is
 * an argv array (never a shell string). With `netns` set, commands run inside that network
 * namespace through `ip netns exec` (tests and the benchmark drive a namespace from outside it);
 * without it they act on the calling process's own namespace, the daemon's normal case.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { XenoError } from '../../common/errors.js';

export interface NetCtx {
  /** Network namespace to act in; absent = the caller's own. */
  netns?: string;
  /** Uid that owns the taps (QEMU's unprivileged user, who then opens them by name); absent = root. */
  tapOwner?: number;
}

export interface RunOptions extends NetCtx {
  /** Written to the command's stdin. */
  input?: string;
  timeoutMs?: number;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** argv prefixed with `ip netns exec NS` when a namespace is given. */
export function nsArgv(argv: readonly string[], netns?: string): string[] {
  return netns ? ['ip', 'netns', 'exec', netns, ...argv] : [...argv];
}

/** Runs a command; resolves with its exit code whatever it is (no throw on a non-zero exit). */
export function runRaw(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const full = nsArgv(argv, opts.netns);
  return new Promise((resolve, reject) => {
    const child = execFile(
      full[0]!,
      full.slice(1),
      { encoding: 'utf8', timeout: opts.timeoutMs ?? 30_000, maxBuffer: 32 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof (err as NodeJS.ErrnoException).code === 'string') {
          reject(new XenoError('HOST_ERROR', `cannot run ${full[0]}: ${err.message}`));
          return;
        }
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
        resolve({ stdout, stderr, code });
      },
    );
    child.stdin?.on('error', () => undefined); // a command that exits without reading its input
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Runs a command; a non-zero exit is a HOST_ERROR naming the command and its stderr. */
export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<string> {
  const r = await runRaw(argv, opts);
  if (r.code !== 0) {
    throw new XenoError('HOST_ERROR', `${argv.join(' ')} failed (exit ${r.code}): ${r.stderr.trim() || r.stdout.trim()}`, {
      argv: [...argv],
    });
  }
  return r.stdout;
}

/** Runs a command and reports only whether it succeeded (for teardown of things that may be gone). */
export async function tryRun(argv: readonly string[], opts: RunOptions = {}): Promise<boolean> {
  try {
    return (await runRaw(argv, opts)).code === 0;
  } catch {
    return false;
  }
}

async function ipJson<T>(ctx: NetCtx, args: string[]): Promise<T> {
  const out = await run(['ip', '-j', ...args], ctx);
  const text = out.trim();
  return (text ? JSON.parse(text) : []) as T;
}

// ---- links ------------------------------------------------------------------------------------

export interface IpLink {
  ifindex: number;
  ifname: string;
  flags: string[];
  mtu: number;
  operstate: string;
  address?: string;
  master?: string;
  ifalias?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

export async function linkList(ctx: NetCtx): Promise<IpLink[]> {
  return ipJson<IpLink[]>(ctx, ['-d', 'link', 'show']);
}

export async function linkGet(ctx: NetCtx, dev: string): Promise<IpLink | undefined> {
  const r = await runRaw(['ip', '-j', '-d', 'link', 'show', 'dev', dev], ctx);
  if (r.code !== 0) return undefined;
  const links = JSON.parse(r.stdout.trim() || '[]') as IpLink[];
  return links[0];
}

export async function linkExists(ctx: NetCtx, dev: string): Promise<boolean> {
  return (await linkGet(ctx, dev)) !== undefined;
}

export async function tuntapAdd(ctx: NetCtx, dev: string): Promise<void> {
  // vnet_hdr: QEMU negotiates virtio-net offloads on it (its own TUNSETIFF would set it anyway).
  const owner = ctx.tapOwner === undefined ? [] : ['user', String(ctx.tapOwner)];
  await run(['ip', 'tuntap', 'add', 'dev', dev, 'mode', 'tap', 'vnet_hdr', ...owner], ctx);
}

export async function bridgeAdd(ctx: NetCtx, dev: string): Promise<void> {
  await run(['ip', 'link', 'add', 'name', dev, 'type', 'bridge', 'stp_state', '0', 'forward_delay', '0'], ctx);
}

export async function ifbAdd(ctx: NetCtx, dev: string): Promise<void> {
  await run(['ip', 'link', 'add', 'name', dev, 'type', 'ifb'], ctx);
}

export async function linkDel(ctx: NetCtx, dev: string): Promise<boolean> {
  return tryRun(['ip', 'link', 'del', 'dev', dev], ctx);
}

export interface LinkSet {
  up?: boolean;
  master?: string;
  nomaster?: boolean;
  mtu?: number;
  address?: string;
  alias?: string;
}

export async function linkSet(ctx: NetCtx, dev: string, s: LinkSet): Promise<void> {
  const argv = ['ip', 'link', 'set', 'dev', dev];
  if (s.master !== undefined) argv.push('master', s.master);
  if (s.nomaster) argv.push('nomaster');
  if (s.mtu !== undefined) argv.push('mtu', String(s.mtu));
  if (s.address !== undefined) argv.push('address', s.address);
  if (s.alias !== undefined) argv.push('alias', s.alias);
  if (s.up !== undefined) argv.push(s.up ? 'up' : 'down');
  await run(argv, ctx);
}

// ---- addresses --------------------------------------------------------------------------------

export interface IpAddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  prefixlen: number;
  scope?: string;
  broadcast?: string;
  label?: string;
  noprefixroute?: boolean;
  dynamic?: boolean;
}

interface IpAddrEntry {
  ifname: string;
  addr_info: IpAddrInfo[];
}

/** IPv4 addresses of a device (empty when it does not exist). */
export async function addrList(ctx: NetCtx, dev: string): Promise<IpAddrInfo[]> {
  const r = await runRaw(['ip', '-j', '-4', 'addr', 'show', 'dev', dev], ctx);
  if (r.code !== 0) return [];
  const entries = JSON.parse(r.stdout.trim() || '[]') as IpAddrEntry[];
  return entries.flatMap((e) => e.addr_info ?? []).filter((a) => a.family === 'inet');
}

/** Adds `addr/prefix`; an address already there is not an error. */
export async function addrAdd(ctx: NetCtx, dev: string, cidr: string, opts: { broadcast?: boolean; noprefixroute?: boolean } = {}): Promise<void> {
  const argv = ['ip', 'addr', 'replace', cidr];
  if (opts.broadcast) argv.push('brd', '+');
  argv.push('dev', dev);
  if (opts.noprefixroute) argv.push('noprefixroute');
  await run(argv, ctx);
}

export async function addrDel(ctx: NetCtx, dev: string, cidr: string): Promise<boolean> {
  return tryRun(['ip', 'addr', 'del', cidr, 'dev', dev], ctx);
}

// ---- routes -----------------------------------------------------------------------------------

export interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  flags?: string[];
}

export async function routeList(ctx: NetCtx, opts: { dev?: string; table?: string } = {}): Promise<IpRoute[]> {
  const argv = ['-4', 'route', 'show'];
  if (opts.table) argv.push('table', opts.table);
  if (opts.dev) argv.push('dev', opts.dev);
  const r = await runRaw(['ip', '-j', ...argv], ctx);
  if (r.code !== 0) return [];
  const routes = JSON.parse(r.stdout.trim() || '[]') as IpRoute[];
  // `ip route show dev X` leaves dev out of each entry.
  return routes.map((rt) => ({ ...rt, dev: rt.dev ?? opts.dev }));
}

/** `ip route` words for a route as listed, on another device if asked. */
export function routeWords(rt: IpRoute, dev = rt.dev): string[] {
  const w = [rt.dst];
  if (rt.gateway) w.push('via', rt.gateway);
  if (dev) w.push('dev', dev);
  if (rt.protocol && rt.protocol !== 'kernel') w.push('proto', rt.protocol);
  if (rt.scope && rt.scope !== 'global') w.push('scope', rt.scope);
  if (rt.prefsrc) w.push('src', rt.prefsrc);
  if (rt.metric !== undefined) w.push('metric', String(rt.metric));
  if (rt.flags?.includes('onlink')) w.push('onlink');
  return w;
}

export async function routeReplace(ctx: NetCtx, words: string[]): Promise<void> {
  await run(['ip', 'route', 'replace', ...words], ctx);
}

export async function routeDel(ctx: NetCtx, words: string[]): Promise<boolean> {
  return tryRun(['ip', 'route', 'del', ...words], ctx);
}

// ---- neighbours (proxy ARP entries) -----------------------------------------------------------

export async function neighProxyAdd(ctx: NetCtx, ip: string, dev: string): Promise<void> {
  await run(['ip', 'neigh', 'replace', 'proxy', ip, 'dev', dev], ctx);
}

export async function neighProxyDel(ctx: NetCtx, ip: string, dev: string): Promise<boolean> {
  return tryRun(['ip', 'neigh', 'del', 'proxy', ip, 'dev', dev], ctx);
}

export async function neighProxyList(ctx: NetCtx): Promise<Array<{ dst: string; dev: string }>> {
  const r = await runRaw(['ip', '-j', '-4', 'neigh', 'show', 'proxy'], ctx);
  if (r.code !== 0) return [];
  return JSON.parse(r.stdout.trim() || '[]') as Array<{ dst: string; dev: string }>;
}

// ---- sysctl -----------------------------------------------------------------------------------

/** `net.ipv4.ip_forward` -> `/proc/sys/net/ipv4/ip_forward` (device names keep their dots). */
export function sysctlPath(key: string): string {
  const m = /^net\.ipv[46]\.(conf|neigh)\.([^/]+)\.([a-z_0-9]+)$/.exec(key);
  if (m) return `/proc/sys/net/${key.split('.')[1]}/${m[1]}/${m[2]}/${m[3]}`;
  return `/proc/sys/${key.replace(/\./g, '/')}`;
}

export async function sysctlRead(ctx: NetCtx, key: string): Promise<string | undefined> {
  const p = sysctlPath(key);
  if (!ctx.netns) {
    try {
      return readFileSync(p, 'utf8').trim();
    } catch {
      return undefined;
    }
  }
  const r = await runRaw(['cat', p], ctx);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

export async function sysctlWrite(ctx: NetCtx, key: string, value: string): Promise<void> {
  const p = sysctlPath(key);
  if (!ctx.netns) {
    try {
      writeFileSync(p, `${value}\n`);
    } catch (e) {
      throw new XenoError('HOST_ERROR', `cannot set ${key}=${value}: ${(e as Error).message}`);
    }
    return;
  }
  // /proc/sys/net shows the namespace of the process reading it: write from inside the namespace.
  await run(['tee', p], { ...ctx, input: `${value}\n` });
}

// ---- nft and tc -------------------------------------------------------------------------------

/** Applies an nft script atomically (`nft -f -`). */
export async function nftApply(ctx: NetCtx, script: string): Promise<void> {
  await run(['nft', '-f', '-'], { ...ctx, input: script });
}

export async function nft(ctx: NetCtx, args: string[]): Promise<string> {
  return run(['nft', ...args], ctx);
}

export async function tc(ctx: NetCtx, args: string[]): Promise<string> {
  return run(['tc', ...args], ctx);
}
