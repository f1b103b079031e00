/**
 * xenod's own configuration (xend-config.sxp keys plus xeno's), with the embedded defaults.
 * The sxp parser in config/ fills this in; every field has a default so the daemon runs with no file.
 */

export type NetworkMode = 'bridge' | 'nat' | 'route';
export type AccelChoice = 'auto' | 'kvm' | 'tcg';

export interface DaemonConfig {
  logfile?: string;
  loglevel: string;
  /** Unix socket of the API (xend-unix-path). */
  unixPath: string;
  stateDir: string;
  relocationServer: boolean;
  relocationPort: number;
  /** '' = all addresses. */
  relocationAddress: string;
  /** Regular expressions; empty = all hosts. */
  relocationHostsAllow: string[];
  /**
   * xeno-relocation-key-file: the pre-shared key (hex) that authenticates migrations both ways and
   * keys QEMU's TLS-PSK stream. No key: no relocation server, and no outgoing migration.
   */
  relocationKeyFile?: string;
  /** The network-script line as written, e.g. `network-bridge netdev=eth0 bridge=xenbr0`. */
  networkScript: string;
  /** Default vif script: vif-bridge | vif-nat | vif-route. */
  vifScript: string;
  /** MiB kept for the host (Domain-0) and never given to guests. */
  dom0MinMem: number;
  /** Host CPUs Domain-0 keeps (0 = all); informative. */
  dom0Cpus: number;
  /** KiB of each guest's console kept in its log file. */
  consoleLimitKb: number;
  accel: AccelChoice;
  /** Path of the QEMU binary. */
  qemuBinary: string;
  /** Floor below which mem-set refuses (MiB). */
  minGuestMem: number;
  /** NAT mode: the pool the per-guest subnets are cut from. */
  natSubnet: string;
  saveOnStop: boolean;
  /** xeno-metrics: where the Prometheus endpoint listens (TCP); absent = no endpoint. */
  metrics?: { host: string; port: number };
  /**
   * xeno-metrics-token-file: the bearer token the endpoint asks for when it listens beyond
   * loopback (default: metrics.token in the state dir, made at first start).
   */
  metricsTokenFile?: string;
  /** xeno-log-size: bytes after which xenod.log is rotated (0 = never). */
  logSizeBytes: number;
  /** xeno-log-count: rotated log files kept (xenod.log.1 ... .N). */
  logCount: number;
  /** xeno-event-limit: events kept in the state database (the oldest go first). */
  eventLimit: number;
  /** xeno-qemu-user: the unprivileged system user every QEMU runs as (created if missing). */
  qemuUser: string;
  /**
   * xeno-restart-limit / xeno-restart-window: a guest restarted (on_reboot/on_crash = restart) this
   * many times within this many seconds is left stopped instead (xend's "restarting too fast").
   * 0 = no limit (the back-off still applies). A guest's own `restart_limit` overrides the limit.
   */
  restartLimit: number;
  restartWindowS: number;
  /**
   * xeno-agent-shutdown-delay: seconds a guest may leave the ACPI power button (shutdown, reboot)
   * unheard before xenod asks its guest agent instead.
   */
  agentShutdownDelayS: number;
  /**
   * xeno-relocation-timeout: seconds of silence from the peer after which a migration session is
   * ended (both ends; each pings at a sixth of it). A cut link is given up on after this long.
   */
  relocationTimeoutS: number;
  /** xeno-auto-dir: links to the configs of guests started at boot (xendomains' /etc/xen/auto). */
  autoDir?: string;
  /** xeno-on-host-stop: what `xeno host-stop` (the host shutting down) does with running guests. */
  onHostStop?: HostStopMode;
  /** xeno-host-stop-timeout: seconds a host stop waits for the guests (clean shut down or save). */
  hostStopTimeout?: number;
  /** xeno-web: where the web console listens (TCP); absent = no web console (the default). */
  web?: { host: string; port: number };
  /** xeno-web-token-file: the login token of the web console (default: web.token in the state dir, made at first start). */
  webTokenFile?: string;
  /** The xeno-pool-* keys: this host is a member of a pool on etcd (absent = standalone). */
  pool?: PoolConfig;
}

/**
 * A pooled host (docs/pool.md): the pool's etcd cluster reached over TLS with this host's client
 * certificate (its CN is the host's etcd user), and the pool door where the other hosts reach it.
 */
export interface PoolConfig {
  /** xeno-pool-name: the pool; its keys live under /xeno/<name>/ in etcd. */
  name: string;
  /** xeno-pool-host: this host's name in the pool (the CN of its certificate). */
  host: string;
  /** xeno-pool-etcd: the etcd client URLs (https://ADDRESS:PORT ...). */
  etcd: string[];
  /** xeno-pool-ca / -cert / -key: the pool CA and this host's certificate and key (PEM files). */
  ca: string;
  cert: string;
  key: string;
  /** xeno-pool-address: the address the other hosts reach this one at (door and relocation). */
  address: string;
  /** xeno-pool-api-port: the pool door (mTLS HTTPS), where other hosts' xenods forward requests. */
  apiPort: number;
  /** xeno-pool-lease-ttl: seconds the host's etcd lease lives without a keep-alive. */
  leaseTtl: number;
}

export const DEFAULT_POOL_API_PORT = 8003;
export const DEFAULT_POOL_LEASE_TTL = 10;

export type HostStopMode = 'save' | 'shutdown' | 'leave';
export const HOST_STOP_MODES: readonly HostStopMode[] = ['save', 'shutdown', 'leave'];
export const DEFAULT_AUTO_DIR = '/etc/xeno/auto';
export const DEFAULT_HOST_STOP_TIMEOUT = 300;

/**
 * The operating keys with their defaults applied (they are optional in DaemonConfig). The auto dir
 * defaults to /etc/xeno/auto for the system's xenod (the default state dir) only: a daemon on a state
 * dir of its own (a test, a second instance) autostarts nothing of the host's unless told to.
 */
export function operatingKeys(c: DaemonConfig): { autoDir: string | null; onHostStop: HostStopMode; hostStopTimeout: number } {
  const autoDir = c.autoDir ?? (c.stateDir === DEFAULT_STATE_DIR ? DEFAULT_AUTO_DIR : null);
  return { autoDir, onHostStop: c.onHostStop ?? 'save', hostStopTimeout: c.hostStopTimeout ?? DEFAULT_HOST_STOP_TIMEOUT };
}

export const DEFAULT_STATE_DIR = '/var/lib/xeno';
export const DEFAULT_SOCKET = '/run/xeno/xenod.sock';

export function defaultDaemonConfig(): DaemonConfig {
  return {
    loglevel: 'info',
    unixPath: DEFAULT_SOCKET,
    stateDir: DEFAULT_STATE_DIR,
    relocationServer: false,
    relocationPort: 8002,
    relocationAddress: '',
    relocationHostsAllow: [],
    networkScript: 'network-bridge',
    vifScript: 'vif-bridge',
    dom0MinMem: 256,
    dom0Cpus: 0,
    consoleLimitKb: 1024,
    accel: 'auto',
    qemuBinary: 'qemu-system-x86_64',
    minGuestMem: 64,
    natSubnet: '10.0.0.0/16',
    saveOnStop: false,
    logSizeBytes: 10 * 1024 * 1024,
    logCount: 5,
    eventLimit: 10_000,
    qemuUser: 'xeno-qemu',
    restartLimit: 5,
    restartWindowS: 60,
    agentShutdownDelayS: 30,
    relocationTimeoutS: 60,
  };
}
