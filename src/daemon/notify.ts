/**
 * Readiness for systemd (Type=notify): Node cannot send on a Unix datagram socket, so xenod runs
 * `systemd-notify --ready` once the API listens. The unit says NotifyAccess=all (the message comes
 * from a child) and systemd-notify waits until the manager has taken the message (its default
 * barrier since systemd 246), so the sender is still alive when the manager looks it up.
 */
import { execFile } from 'node:child_process';
import type { Logger } from 'pino';

export function notifySystemd(log: Logger, fields: string[]): Promise<void> {
  if (!process.env.NOTIFY_SOCKET) return Promise.resolve();
  return new Promise((resolve) => {
    execFile('systemd-notify', [`--pid=${process.pid}`, ...fields], { timeout: 10_000 }, (err, _out, stderr) => {
      if (err) log.error(`systemd-notify ${fields.join(' ')} failed: ${stderr.trim() || err.message}`);
      resolve();
    });
  });
}
