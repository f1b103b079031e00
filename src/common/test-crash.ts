/**
 * TEST-ONLY fault injection: with XENO_TEST_CRASH_AT=<point> in its environment, xenod kills itself
 * with SIGKILL (as `kill -9` would) when it reaches that named point, so crash-consistency tests can
 * stop it at an exact instant of an operation. Unset (always, outside tests) it does nothing.
 * Points: create:recorded, boot:plugged, boot:spawned, boot:attached, boot:launched,
 * destroy:dying, destroy:killed, restart:torn-down, mem-set:ballooned, vcpu-set:plugged,
 * vcpu-set:unplug-sent, network-attach:plugged, network-attach:added, network-detach:released,
 * save:written, block-attach:plugged, block-detach:released, storage-copy:mirroring, storage-copy:ram,
 * migrate-out:confirmed (the source, after the target's ok).
 */
export function crashPoint(point: string): void {
  if (process.env.XENO_TEST_CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}
