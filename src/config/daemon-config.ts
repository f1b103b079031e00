/**
 * xend-config.sxp -> DaemonConfig: xend's keys that mean something here, plus xeno's own
 * (`xeno-*`), on top of defaultDaemonConfig(). Errors are XenoError('CONFIG_INVALID') with
 * file:line:col of the value; unknown keys are warnings.
 *
 * The only I/O is loadDaemonConfigFile(), through readConfigFile().
 */

import { isIP, isIPv4 } from 'node:net';
import { XenoError } from '../common/errors.js';
import { defaultDaemonConfig, HOST_STOP_MODES, type PoolConfig, type AccelChoice, type DaemonConfig, type HostStopMode, type NetworkMode } from '../model/daemon-config.js';
import type { Warn } from './domain-config.js';
import { readConfigFile } from './read-file.js';
import { parseMemSize } from './sizes.js';
import { parseSxp, type SxpNode, type SxpPos } from './sxp.js';
import { scriptBaseName, VIF_SCRIPTS } from './vif-spec.js';
import { parseListenAddress } from './listen-address.js';
import { applyPoolKey, finishPoolConfig } from './pool-config.js';

export const NETWORK_SCRIPTS = ['network-bridge', 'network-nat', 'network-route'] as const;

/** xend keys for features xeno does not have (or always has): accepted without a warning. */
const XEND_IGNORED = new Set([
  'xend-unix-server', 'enable-dump', 'xend-http-server', 'xend-port', 'xend-address',
  'xend-tcp-xmlrpc-server', 'xend-tcp-xmlrpc-server-address', 'xend-tcp-xmlrpc-server-port',
  'xend-unix-xmlrpc-server', 'xen-api-server', 'xend-udev-event-server', 'xend-domains-path',
  'xend-relocation-ssl-server', 'xend-relocation-ssl-port', 'xend-relocation-ssl',
  'xend-relocation-server-ssl-key-file', 'xend-relocation-server-ssl-cert-file',
  'xend-udp-xmlrpc-server', 'xend-storage-path', 'xend-domain-lock', 'xend-domain-lock-path',
  'xend-domain-lock-utility', 'device-create-timeout', 'device-destroy-timeout',
  'enable-dom0-ballooning', 'total_available_memory', 'vncpasswd', 'vnc-listen', 'vnc-tls',
  'vnc-x509-cert-dir', 'vnc-x509-verify', 'keymap', 'external-migration-tool',
  'resource-label-change-script', 'xend-vnc-listen',
]);

const LOG_LEVELS: Record<string, string> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  critical: 'fatal',
  fatal: 'fatal',
};

const TRUE_WORDS = ['yes', 'y', 'true', 't', 'on', '1'];
const FALSE_WORDS = ['no', 'n', 'false', 'f', 'off', '0'];
const HOSTNAME_RE = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

function invalid(msg: string): XenoError {
  return new XenoError('CONFIG_INVALID', msg);
}

/**
 * Splits a network-script line, `network-bridge netdev=eth0 bridge=xenbr0` (the script may have a
 * path), into its mode and `key=value` arguments.
 */
export function parseNetworkScript(line: string): { mode: NetworkMode; args: Record<string, string> } {
  const words = line.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) throw invalid('empty network-script');
  const script = scriptBaseName(words[0]!);
  if (!(NETWORK_SCRIPTS as readonly string[]).includes(script)) {
    throw invalid(`unknown network-script "${words[0]}" (${NETWORK_SCRIPTS.join(', ')})`);
  }
  const args: Record<string, string> = {};
  for (const w of words.slice(1)) {
    const m = /^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$/.exec(w);
    if (!m) throw invalid(`network-script argument "${w}" is not key=value`);
    args[m[1]!] = m[2]!;
  }
  return { mode: script.slice('network-'.length) as NetworkMode, args };
}

/** Parses `a.b.c.d/n` (n 8..30, no host bits set). */
export function parseCidr(s: string): { address: string; prefix: number } {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(s.trim());
  if (!m || !isIPv4(m[1]!)) throw invalid(`invalid subnet "${s}" (expected CIDR like 10.0.0.0/16)`);
  const prefix = Number(m[2]);
  if (prefix < 8 || prefix > 30) throw invalid(`subnet "${s}": the prefix length must be between 8 and 30`);
  const addr = m[1]!.split('.').reduce((a, o) => a * 256 + Number(o), 0);
  const size = 2 ** (32 - prefix);
  if (addr % size !== 0) {
    const net = addr - (addr % size);
    const dotted = [24, 16, 8, 0].map((sh) => Math.floor(net / 2 ** sh) % 256).join('.');
    throw invalid(`subnet "${s}" has host bits set (did you mean ${dotted}/${prefix}?)`);
  }
  return { address: m[1]!, prefix };
}

class DaemonNormaliser {
  constructor(
    private readonly file: string,
    private readonly warn: Warn,
  ) {}

  private where(p: SxpPos): string {
    return `${this.file}:${p.line}:${p.col}`;
  }

  private error(p: SxpPos, msg: string): XenoError {
    return new XenoError('CONFIG_INVALID', `${this.where(p)}: ${msg}`, { file: this.file, line: p.line, col: p.col });
  }

  private at<T>(p: SxpPos, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof XenoError) throw this.error(p, err.message);
      throw err;
    }
  }

  run(sexps: SxpNode[]): DaemonConfig {
    const cfg = defaultDaemonConfig();
    for (const form of sexps) {
      if (form.kind !== 'list') throw this.error(form, `expected a (key value) form, found "${form.value}"`);
      const [head, ...values] = form.items;
      if (!head) throw this.error(form, 'empty form ()');
      if (head.kind !== 'atom') throw this.error(head, 'expected a key name at the start of the form');
      const key = head.value;
      if (XEND_IGNORED.has(key)) continue;
      if (!HANDLED.has(key)) {
        this.warn(`${this.where(head)}: warning: ignoring unknown key "${key}"`);
        continue;
      }
      if (values.length !== 1) {
        throw this.error(
          values[1] ?? form,
          values.length === 0
            ? `key "${key}" has no value`
            : `key "${key}" takes one value (quote values that contain spaces: '...')`,
        );
      }
      const node = values[0]!;
      if (node.kind === 'list') throw this.error(node, `key "${key}" expects a single value, not a list`);
      this.apply(cfg, key, node.value, node);
    }
    this.finishPool(cfg, sexps);
    return cfg;
  }

  private int(p: SxpPos, key: string, v: string, min: number, max: number): number {
    if (!/^\d+$/.test(v)) throw this.error(p, `key "${key}" expects a number, found "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw this.error(p, `key "${key}" must be between ${min} and ${max} (got ${n})`);
    return n;
  }

  /** A size in bytes: 10M, 512k, 1g, or plain bytes. */
  private byteSize(p: SxpPos, key: string, v: string): number {
    const m = /^(\d+)\s*([kmg])?(?:i?b)?$/i.exec(v.trim());
    if (!m) throw this.error(p, `key "${key}" expects a size such as 10M, 512k or 1g, found "${v}"`);
    const n = Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] ?? ' ').toLowerCase());
    if (!Number.isSafeInteger(n)) throw this.error(p, `key "${key}": ${v} is too large`);
    return n;
  }

  private bool(p: SxpPos, key: string, v: string): boolean {
    const w = v.toLowerCase();
    if (TRUE_WORDS.includes(w)) return true;
    if (FALSE_WORDS.includes(w)) return false;
    throw this.error(p, `key "${key}" expects yes or no, found "${v}"`);
  }

  private absPath(p: SxpPos, key: string, v: string): string {
    if (!v.startsWith('/')) throw this.error(p, `key "${key}" expects an absolute path, found "${v}"`);
    return v;
  }

  private apply(cfg: DaemonConfig, key: string, v: string, p: SxpPos): void {
    switch (key) {
      case 'logfile':
        cfg.logfile = this.absPath(p, key, v);
        break;
      case 'loglevel': {
        const level = LOG_LEVELS[v.toLowerCase()];
        if (!level) throw this.error(p, `unknown loglevel "${v}" (DEBUG, INFO, WARN, ERROR, CRITICAL)`);
        cfg.loglevel = level;
        break;
      }
      case 'xend-unix-path':
        cfg.unixPath = this.absPath(p, key, v);
        break;
      case 'xend-relocation-server':
        cfg.relocationServer = this.bool(p, key, v);
        break;
      case 'xend-relocation-port':
        cfg.relocationPort = this.int(p, key, v, 1, 65535);
        break;
      case 'xend-relocation-address': {
        const a = v.trim();
        if (a !== '' && isIP(a) === 0 && !HOSTNAME_RE.test(a)) {
          throw this.error(p, `invalid xend-relocation-address "${v}" ('' for all addresses, an IP address or a host name)`);
        }
        cfg.relocationAddress = a;
        break;
      }
      case 'xend-relocation-hosts-allow': {
        const res = v.split(/\s+/).filter(Boolean);
        for (const re of res) {
          try {
            new RegExp(re);
          } catch (e) {
            throw this.error(p, `xend-relocation-hosts-allow: invalid regular expression "${re}": ${(e as Error).message}`);
          }
        }
        cfg.relocationHostsAllow = res;
        break;
      }
      case 'network-script': {
        const words = v.trim().split(/\s+/);
        this.at(p, () => parseNetworkScript(v));
        cfg.networkScript = [scriptBaseName(words[0]!), ...words.slice(1)].join(' ');
        break;
      }
      case 'vif-script': {
        const [script = '', ...args] = v.trim().split(/\s+/);
        const name = scriptBaseName(script);
        if (!(VIF_SCRIPTS as readonly string[]).includes(name)) {
          throw this.error(p, `unknown vif-script "${v}" (${VIF_SCRIPTS.join(', ')})`);
        }
        if (args.length) this.warn(`${this.where(p)}: warning: ignoring vif-script arguments "${args.join(' ')}"`);
        cfg.vifScript = name;
        break;
      }
      case 'dom0-min-mem':
        cfg.dom0MinMem = this.at(p, () => parseMemSize(v));
        break;
      case 'dom0-cpus':
        cfg.dom0Cpus = this.int(p, key, v, 0, 4096);
        break;
      case 'console-limit':
        cfg.consoleLimitKb = this.int(p, key, v, 0, 1024 * 1024);
        break;
      case 'xeno-state-dir':
        cfg.stateDir = this.absPath(p, key, v);
        break;
      case 'xeno-accel':
        if (v !== 'auto' && v !== 'kvm' && v !== 'tcg') throw this.error(p, `unknown xeno-accel "${v}" (auto, kvm or tcg)`);
        cfg.accel = v as AccelChoice;
        break;
      case 'xeno-qemu':
        if (!v.trim()) throw this.error(p, 'xeno-qemu is empty');
        cfg.qemuBinary = v.trim();
        break;
      case 'xeno-min-guest-mem': {
        const mib = this.at(p, () => parseMemSize(v));
        if (mib < 1) throw this.error(p, 'xeno-min-guest-mem must be at least 1 MiB');
        cfg.minGuestMem = mib;
        break;
      }
      case 'xeno-nat-subnet': {
        const { address, prefix } = this.at(p, () => parseCidr(v));
        cfg.natSubnet = `${address}/${prefix}`;
        break;
      }
      case 'xeno-save-on-stop':
        cfg.saveOnStop = this.bool(p, key, v);
        break;
      case 'xeno-relocation-key-file':
        cfg.relocationKeyFile = this.absPath(p, key, v);
        break;
      case 'xeno-metrics':
        cfg.metrics = this.at(p, () => parseListenAddress(v, 'xeno-metrics'));
        break;
      case 'xeno-metrics-token-file':
        cfg.metricsTokenFile = this.absPath(p, key, v);
        break;
      case 'xeno-auto-dir':
        cfg.autoDir = this.absPath(p, key, v);
        break;
      case 'xeno-on-host-stop':
        if (!(HOST_STOP_MODES as readonly string[]).includes(v)) throw this.error(p, `unknown xeno-on-host-stop "${v}" (${HOST_STOP_MODES.join(', ')})`);
        cfg.onHostStop = v as HostStopMode;
        break;
      case 'xeno-host-stop-timeout':
        cfg.hostStopTimeout = this.int(p, key, v, 1, 86400);
        break;
      case 'xeno-log-size':
        cfg.logSizeBytes = this.byteSize(p, key, v);
        break;
      case 'xeno-log-count':
        cfg.logCount = this.int(p, key, v, 0, 1000);
        break;
      case 'xeno-event-limit':
        cfg.eventLimit = this.int(p, key, v, 1, 100_000_000);
        break;
      case 'xeno-qemu-user':
        if (!/^[a-z_][a-z0-9_-]{0,30}$/.test(v)) throw this.error(p, `invalid xeno-qemu-user "${v}" (a system user name: [a-z_][a-z0-9_-]*, at most 31 characters)`);
        if (v === 'root') throw this.error(p, 'xeno-qemu-user cannot be root: QEMU runs unprivileged');
        cfg.qemuUser = v;
        break;
      case 'xeno-restart-limit':
        cfg.restartLimit = this.int(p, key, v, 0, 100_000);
        break;
      case 'xeno-restart-window':
        cfg.restartWindowS = this.int(p, key, v, 1, 86_400);
        break;
      case 'xeno-agent-shutdown-delay':
        cfg.agentShutdownDelayS = this.int(p, key, v, 1, 3600);
        break;
      case 'xeno-relocation-timeout':
        cfg.relocationTimeoutS = this.int(p, key, v, 6, 3600);
        break;
      case 'xeno-web':
        cfg.web = this.at(p, () => parseListenAddress(v, 'xeno-web'));
        break;
      case 'xeno-web-token-file':
        cfg.webTokenFile = this.absPath(p, key, v);
        break;
      default:
        if (key.startsWith('xeno-pool-')) this.at(p, () => applyPoolKey(this.pool, key, v));
    }
  }

  private pool: Partial<PoolConfig> = {};

  /** The pool keys come all together (a pooled host) or not at all (standalone, as before). */
  private finishPool(cfg: DaemonConfig, sexps: SxpNode[]): void {
    const first = sexps.find((f) => f.kind === 'list' && f.items[0]?.kind === 'atom' && f.items[0].value.startsWith('xeno-pool-'));
    if (first) cfg.pool = this.at(first, () => finishPoolConfig(this.pool));
  }
}

export const HANDLED = new Set([
  'logfile', 'loglevel', 'xend-unix-path', 'xend-relocation-server', 'xend-relocation-port',
  'xend-relocation-address', 'xend-relocation-hosts-allow', 'network-script', 'vif-script',
  'dom0-min-mem', 'dom0-cpus', 'console-limit', 'xeno-state-dir', 'xeno-accel', 'xeno-qemu',
  'xeno-min-guest-mem', 'xeno-nat-subnet', 'xeno-save-on-stop', 'xeno-relocation-key-file',
  'xeno-metrics', 'xeno-metrics-token-file',
  'xeno-auto-dir', 'xeno-on-host-stop', 'xeno-host-stop-timeout',
  'xeno-log-size', 'xeno-log-count', 'xeno-event-limit',
  'xeno-qemu-user',
  'xeno-restart-limit', 'xeno-restart-window',
  'xeno-agent-shutdown-delay', 'xeno-relocation-timeout',
  'xeno-web', 'xeno-web-token-file',
  'xeno-pool-name', 'xeno-pool-host', 'xeno-pool-etcd', 'xeno-pool-ca', 'xeno-pool-cert', 'xeno-pool-key',
  'xeno-pool-address', 'xeno-pool-api-port', 'xeno-pool-lease-ttl',
]);

/** Builds the DaemonConfig from parsed xend-config.sxp forms (defaults for what is absent). */
export function toDaemonConfig(sexps: SxpNode[], file = '<string>', warn: Warn = () => {}): DaemonConfig {
  return new DaemonNormaliser(file, warn).run(sexps);
}

/** Parses xend-config.sxp text into a DaemonConfig. */
export function parseDaemonConfig(text: string, file = '<string>', warn: Warn = () => {}): DaemonConfig {
  return toDaemonConfig(parseSxp(text, file), file, warn);
}

/** Reads and parses a xend-config.sxp file; NO_SUCH_FILE when it does not exist. */
export function loadDaemonConfigFile(file: string, warn: Warn = () => {}): DaemonConfig {
  return parseDaemonConfig(readConfigFile(file), file, warn);
}
