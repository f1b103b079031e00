/**
 * A client of qemu-guest-agent over the virtio-serial port org.qemu.guest_agent.0, whose host end
 * is a socket QEMU listens on in the run dir (qga.sock). One connection per call: the agent keeps
 * no session, and a connection left open would block xenod's next call after a restart. Every call
 * starts with guest-sync-delimited, which flushes what an earlier, abandoned call left in the pipe
 * (the 0xFF byte resets the agent's parser). Calls to one guest are serialised.
 */
import net from 'node:net';
import { XenoError } from '../../common/errors.js';

export interface GuestNetInterface {
  name: string;
  'hardware-address'?: string;
  'ip-addresses'?: Array<{ 'ip-address-type': 'ipv4' | 'ipv6'; 'ip-address': string; prefix: number }>;
}

export interface GuestOsInfo {
  id?: string;
  name?: string;
  'pretty-name'?: string;
  version?: string;
  'kernel-release'?: string;
}

export interface GuestVcpu {
  'logical-id': number;
  online: boolean;
  'can-offline'?: boolean;
}

const chains = new Map<string, Promise<unknown>>();

export class GuestAgent {
  constructor(readonly socketPath: string) {}

  /**
   * Runs one agent command. `noReply` is for commands that answer nothing on success
   * (guest-shutdown). Throws TIMEOUT when no agent answers the sync (the guest runs none).
   */
  execute<T = unknown>(cmd: string, args?: Record<string, unknown>, opts: { timeoutMs?: number; noReply?: boolean } = {}): Promise<T> {
    const prev = chains.get(this.socketPath) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(() => this.once<T>(cmd, args, opts.timeoutMs ?? 5000, opts.noReply ?? false));
    chains.set(this.socketPath, run);
    void run.finally(() => {
      if (chains.get(this.socketPath) === run) chains.delete(this.socketPath);
    }).catch(() => undefined);
    return run;
  }

  private once<T>(cmd: string, args: Record<string, unknown> | undefined, timeoutMs: number, noReply: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const syncId = Math.floor(Math.random() * 2 ** 31);
      const sock = net.connect(this.socketPath);
      let buf = '';
      let synced = false;
      const finish = (err: Error | null, value?: unknown) => {
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(value as T);
      };
      const timer = setTimeout(() => {
        if (synced && noReply) finish(null, undefined);
        else finish(new XenoError('TIMEOUT', synced ? `the guest agent did not answer ${cmd} in ${timeoutMs} ms` : 'no guest agent answers (is qemu-guest-agent running in the guest?)'));
      }, timeoutMs);
      sock.on('error', (e) => finish(new XenoError('BAD_STATE', `cannot reach the guest agent socket: ${e.message}`)));
      sock.on('connect', () => {
        sock.write(Buffer.concat([Buffer.from([0xff]), Buffer.from(JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id: syncId } }) + '\n')]));
      });
      sock.on('data', (d: Buffer) => {
        // The agent's delimiter byte and any stale replies before ours are skipped.
        buf += d.toString('latin1').replace(/\xff/g, '');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          let msg: { return?: unknown; error?: { class?: string; desc?: string } };
          try {
            msg = JSON.parse(Buffer.from(line, 'latin1').toString('utf8'));
          } catch {
            continue;
          }
          if (!synced) {
            if (msg.return === syncId) {
              synced = true;
              sock.write(JSON.stringify(args ? { execute: cmd, arguments: args } : { execute: cmd }) + '\n');
            }
            continue;
          }
          if (msg.error) finish(new XenoError('QEMU_ERROR', `guest agent: ${cmd}: ${msg.error.desc ?? msg.error.class ?? 'error'}`));
          else finish(null, msg.return);
          return;
        }
      });
    });
  }

  async ping(timeoutMs = 2000): Promise<boolean> {
    try {
      await this.execute('guest-ping', undefined, { timeoutMs });
      return true;
    } catch {
      return false;
    }
  }

  interfaces(timeoutMs?: number): Promise<GuestNetInterface[]> {
    return this.execute<GuestNetInterface[]>('guest-network-get-interfaces', undefined, { timeoutMs });
  }

  osInfo(timeoutMs?: number): Promise<GuestOsInfo> {
    return this.execute<GuestOsInfo>('guest-get-osinfo', undefined, { timeoutMs });
  }

  vcpus(): Promise<GuestVcpu[]> {
    return this.execute<GuestVcpu[]>('guest-get-vcpus');
  }

  /** Onlines the first `count` logical CPUs and offlines the rest (those the guest lets go). */
  async setOnlineVcpus(count: number): Promise<number> {
    const all = await this.vcpus();
    const change = all
      .filter((v) => (v['logical-id'] < count ? !v.online : v.online && v['can-offline'] !== false))
      .map((v) => ({ 'logical-id': v['logical-id'], online: v['logical-id'] < count }));
    if (change.length === 0) return all.filter((v) => v.online).length;
    await this.execute<number>('guest-set-vcpus', { vcpus: change });
    return (await this.vcpus()).filter((v) => v.online).length;
  }

  /**
   * guest-shutdown (a poweroff, or a reboot); when the guest's shutdown(8) fails (systemd's needs
   * logind, so D-Bus: a minbase Debian has neither), `systemctl poweroff|reboot` through guest-exec,
   * which talks to PID 1 directly.
   */
  async shutdown(mode: 'powerdown' | 'reboot' = 'powerdown'): Promise<void> {
    try {
      await this.execute<void>('guest-shutdown', { mode }, { timeoutMs: 3000, noReply: true });
    } catch (e) {
      if (!(e instanceof XenoError) || e.code !== 'QEMU_ERROR') throw e;
      await this.execute('guest-exec', { path: '/bin/systemctl', arg: [mode === 'reboot' ? 'reboot' : 'poweroff'] });
    }
  }

  fsfreeze(): Promise<number> {
    return this.execute<number>('guest-fsfreeze-freeze', undefined, { timeoutMs: 30_000 });
  }

  fsthaw(): Promise<number> {
    return this.execute<number>('guest-fsfreeze-thaw', undefined, { timeoutMs: 30_000 });
  }

  /** Sets the guest's clock to the host's (nanoseconds since the epoch). */
  setTime(): Promise<void> {
    return this.execute<void>('guest-set-time', { time: Date.now() * 1_000_000 });
  }
}

/** The guest's IPv4/IPv6 addresses, loopback left out. */
export function guestAddresses(ifaces: GuestNetInterface[]): string[] {
  return ifaces
    .filter((i) => i.name !== 'lo')
    .flatMap((i) => (i['ip-addresses'] ?? []).map((a) => a['ip-address']))
    .filter((a) => !a.startsWith('fe80:'));
}
