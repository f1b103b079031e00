/**
 * A load put on a bench guest through its serial shell (the test guest has no such option built in):
 *  - idle:      nothing (the heartbeat once a second);
 *  - print:     a line on the console every 10 ms;
 *  - dirty:N:   N MiB/s of RAM rewritten with non-zero bytes (an 8 MiB random file in tmpfs copied
 *               over another, paced by usleep; an upper bound: a slow vcpu dirties less).
 * `stop` ends whichever runs. The same text goes to the raw and the xeno guest.
 */
import net from 'node:net';

export type Load = 'idle' | 'print' | `dirty:${number}`;

export function loadCommand(load: Load): string {
  if (load === 'idle') return 'true';
  if (load === 'print') return '(while :; do echo tick; usleep 10000; done) & echo $! > /tmp/load.pid';
  const mbps = Number(load.slice('dirty:'.length));
  if (!(mbps > 0)) throw new Error(`bad load ${load}`);
  const pause = Math.round((8 / mbps) * 1e6);
  return `dd if=/dev/urandom of=/tmp/src bs=1M count=8 2>/dev/null; (while :; do cat /tmp/src > /tmp/dst; usleep ${pause}; done) >/dev/null 2>&1 & echo $! > /tmp/load.pid`;
}

export const STOP_LOAD = '[ -f /tmp/load.pid ] && kill $(cat /tmp/load.pid); rm -f /tmp/load.pid /tmp/dst';

export function parseLoads(arg: string | undefined, def: Load[]): Load[] {
  if (!arg) return def;
  return arg.split(',').map((l) => {
    if (l !== 'idle' && l !== 'print' && !/^dirty:\d+$/.test(l)) throw new Error(`--load: idle, print or dirty:MIBPS, not ${l}`);
    return l as Load;
  });
}


/** Run a command in a raw QEMU guest's serial shell (its chardev socket); resolves when it is done. */
export function serialRun(serialPath: string, command: string, timeoutMs = 60_000): Promise<void> {
  const tag = `XB${Math.random().toString(36).slice(2, 8)}`;
  return new Promise((resolve, reject) => {
    const s = net.createConnection(serialPath);
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`guest shell did not finish: ${command}`));
    }, timeoutMs);
    s.on('connect', () => s.write(`${command}; echo ${tag}-""DONE\n`));
    s.on('data', (d) => {
      buf += String(d);
      if (buf.includes(`${tag}-DONE`)) {
        clearTimeout(timer);
        s.destroy();
        resolve();
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Resolve once `re` shows on a raw QEMU's serial socket (retrying the connect while QEMU starts). */
export function waitSerial(serialPath: string, re: RegExp, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    let buf = '';
    const attempt = () => {
      const s = net.createConnection(serialPath);
      s.on('data', (d) => {
        buf += String(d);
        if (re.test(buf)) {
          s.destroy();
          resolve();
        }
      });
      s.on('error', () => (Date.now() > deadline ? reject(new Error(`serial ${serialPath} never showed ${re}`)) : setTimeout(attempt, 20)));
    };
    attempt();
  });
}
