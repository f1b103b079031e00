/**
 * The host's fence watchdog: a tiny process in its own session (spawned detached by xenod, like
 * QEMU), so that it outlives a crashed xenod. xenod feeds it over a unix socket in the state dir
 * (`ha-fence.sock`, one JSON line every ~100 ms, see fence-watchdog.ts): the CLOCK_MONOTONIC time of
 * the last successful lease renewal, the fence time F, the HA QEMUs (pid + /proc start time, so a
 * reused pid is never killed) and whether the fence rule says "hold" (etcd down for everyone).
 *
 * Rule: when more than F has passed since the last renewal it was told of, it SIGKILLs those QEMUs
 * — whether xenod is alive or not — unless xenod's last word, on a live connection, is a hold
 * (etcd out for every host) still within the bound the fence rule gave it (holdUntil). With xenod gone it cannot know that, so it fences
 * (the safe side). It exits when xenod stands it down (a stop on purpose), or when no xenod has
 * been connected and it has nothing left to guard.
 *
 * argv: <socket path>. Deliberately self-contained (node built-ins only): it must not fail with xenod.
 */
import { appendFileSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface WatchdogFeed {
  /** CLOCK_MONOTONIC ms of the send time of the last acknowledged renewal (null: none yet). */
  renewedAt: number | null;
  fenceMs: number;
  pids: Array<{ pid: number; start: string }>;
  hold: boolean;
  /** CLOCK_MONOTONIC ms until which that hold stays safe with no newer feed (null: no hold; absent: an older xenod). */
  holdUntil?: number | null;
  /** A stop on purpose: the watchdog exits (xenod marked its guests held first). */
  bye?: boolean;
}

// an older xenod's hold (no holdUntil) lasts this long after it last said so: it must outlast an event-loop
// lag of a loaded xenod, and stays far under the leader hold-off (F) that any host coming back must wait out
const HOLD_FRESH_MS = 2000;
const CHECK_MS = 50;
const CONNECTED_GRACE_MS = 500;

export function monoNowMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or undefined if gone/zombie. */
export function procStart(pid: number): string | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined;
    return rest[19];
  } catch {
    return undefined;
  }
}

function main(sock: string): void {
  const log = (m: string) => {
    try {
      appendFileSync(sock.replace(/\.sock$/, '.log'), `${new Date().toISOString()} ${m}\n`);
    } catch {
      /* logging must never stop the watchdog */
    }
  };
  let renewedAt = -Infinity;
  let fenceMs = Infinity;
  let pids: WatchdogFeed['pids'] = [];
  /** Until when (CLOCK_MONOTONIC ms) xenod's last hold is safe: the fence rule's own bound (fence.ts). */
  let holdEnd = -Infinity;
  let client: Socket | undefined;
  let everConnected = false;
  let lastFence = '';

  const server = createServer((s) => {
    client?.destroy();
    client = s;
    everConnected = true;
    log('xenod connected');
    let buf = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let f: WatchdogFeed;
        try {
          f = JSON.parse(line) as WatchdogFeed;
        } catch {
          continue;
        }
        if (f.bye) {
          log('stood down by xenod');
          server.close();
          rmSync(sock, { force: true });
          process.exit(0);
        }
        if (typeof f.renewedAt === 'number') renewedAt = Math.max(renewedAt, f.renewedAt);
        fenceMs = f.fenceMs;
        pids = f.pids;
        holdEnd = !f.hold ? -Infinity : typeof f.holdUntil === 'number' ? f.holdUntil : monoNowMs() + HOLD_FRESH_MS;
      }
    });
    const gone = () => {
      if (client !== s) return;
      client = undefined;
      holdEnd = -Infinity; // xenod gone: nobody can tell us etcd is out for everyone
      log(`xenod gone; guarding ${pids.map((p) => p.pid).join(', ') || 'nothing'}`);
    };
    s.on('close', gone);
    s.on('error', gone);
  });

  setInterval(() => {
    const now = monoNowMs();
    const live = pids.filter((p) => procStart(p.pid) === p.start);
    if (!client && everConnected && live.length === 0) {
      log('no xenod and nothing to guard: exiting');
      rmSync(sock, { force: true });
      process.exit(0);
    }
    // with xenod connected, its own guard fences first (at F) and knows the exit is its fence, not a
    // crash for on_crash to restart; the watchdog is the backstop half a second later (T - F >> 0.5 s)
    if (now - renewedAt <= fenceMs + (client ? CONNECTED_GRACE_MS : 0)) {
      lastFence = '';
      return;
    }
    if (client && now <= holdEnd) return;
    if (!live.length) return;
    for (const p of live) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
    const what = live.map((p) => p.pid).join(', ');
    if (what !== lastFence) log(`fence: no lease renewal for ${Math.round(now - renewedAt)} ms (F ${fenceMs}), ${client ? 'no hold' : 'xenod gone'}: SIGKILL ${what}`);
    lastFence = what;
  }, CHECK_MS);

  rmSync(sock, { force: true });
  server.listen(sock, () => log(`listening (pid ${process.pid})`));
  // its own session already keeps it out of xenod's group; a hang-up is no reason to stop guarding
  process.on('SIGHUP', () => undefined);
  // if no xenod connects at all within a minute, nobody feeds us: leave
  setTimeout(() => {
    if (!everConnected) process.exit(0);
  }, 60_000).unref();
}

// run as a program only (xenod imports procStart/monoNowMs from here)
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url) && process.argv[2]) main(process.argv[2]);
