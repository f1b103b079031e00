/**
 * The restart veto of an HA guest (haRestartVeto): an on_crash / on_reboot restart here is refused
 * once the host fenced, or while its renewals are past the fence time and the fence rule does not
 * hold; allowed while renewing, and while etcd is out for everyone (nobody can start it elsewhere).
 * And the fence rule coming back from an outage of etcd for everyone (the grace after a hold).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fenceVerdict, haRestartVeto, recoveryMarginMs } from './fence.js';

const F = 6000;

describe('haRestartVeto', () => {
  it('allows a restart while the host renews', () => {
    assert.equal(haRestartVeto({ fenced: false, holding: false, renewAgeMs: 900, fenceMs: F }), undefined);
    assert.equal(haRestartVeto({ fenced: false, holding: false, renewAgeMs: F, fenceMs: F }), undefined);
  });

  it('refuses once renewals are past the fence time, even before the guard has fenced', () => {
    assert.match(haRestartVeto({ fenced: false, holding: false, renewAgeMs: F + 1, fenceMs: F }) ?? '', /no lease renewal for 6001 ms/);
  });

  it('refuses once the host fenced in this outage, whatever the renewals and the hold say', () => {
    assert.match(haRestartVeto({ fenced: true, holding: false, renewAgeMs: 100, fenceMs: F }) ?? '', /fenced/);
    assert.match(haRestartVeto({ fenced: true, holding: true, renewAgeMs: 3 * F, fenceMs: F }) ?? '', /fenced/);
  });

  it('allows it while etcd is out for everyone (the fence rule holds)', () => {
    assert.equal(haRestartVeto({ fenced: false, holding: true, renewAgeMs: 5 * F, fenceMs: F }), undefined);
  });
});

describe('fenceVerdict coming back from an outage of etcd for everyone', () => {
  const base = { fenceMs: F, staleMs: 3000, healthyMs: 3000, peers: ['b', 'c'] };
  const now = 100_000;
  const renewing = { renewAgeMs: 200, heardAt: now - 100 };
  const notRenewing = { renewAgeMs: 20_000, heardAt: now - 100 };

  it('holds while every other member is cut off from etcd too', () => {
    const v = fenceVerdict({ ...base, renewAgeMs: 20_000, now, reports: (h) => ({ host: h, ...notRenewing }) });
    assert.equal(v.action, 'hold');
  });

  it('a member back first gives the others a grace, counted from when it was last heard down', () => {
    const downHeard = (h: string) => (h === 'b' ? now - 2000 : undefined);
    const v = fenceVerdict({ ...base, renewAgeMs: 25_000, now, downHeard, reports: (h) => ({ host: h, ...(h === 'b' ? renewing : notRenewing) }) });
    assert.equal(v.action, 'hold', JSON.stringify(v));
    assert.match((v as { why: string }).why, /etcd is back for b/);
  });

  it('the grace ends a margin short of the fence time after that report: then it fences', () => {
    const downHeard = (h: string) => (h === 'b' ? now - (F - recoveryMarginMs(F)) : undefined);
    const v = fenceVerdict({ ...base, renewAgeMs: 25_000, now, downHeard, reports: (h) => ({ host: h, ...(h === 'b' ? renewing : notRenewing) }) });
    assert.equal(v.action, 'fence');
  });

  it('no grace for a member never heard down in this outage (it renewed all along: we are cut off)', () => {
    const v = fenceVerdict({ ...base, renewAgeMs: F + 1, now, downHeard: () => undefined, reports: (h) => ({ host: h, ...renewing }) });
    assert.equal(v.action, 'fence');
  });

  it('a member gone silent since it was heard down holds as long as one that says so: its bound is the same', () => {
    const downHeard = (h: string) => (h === 'b' ? now - 1000 : undefined);
    const v = fenceVerdict({ ...base, renewAgeMs: 25_000, now, downHeard, reports: (h) => (h === 'b' ? undefined : { host: h, ...notRenewing }) });
    assert.equal(v.action, 'hold', JSON.stringify(v));
    assert.match((v as { why: string }).why, /b silent since heard cut off/);
    // the earliest bound: b heard down 1 s ago, c 100 ms ago
    assert.equal((v as { untilMs: number }).untilMs, now - 1000 + F - recoveryMarginMs(F));
  });

  it('a silent member fences once its last down report is a margin short of F old, or if it was never heard down', () => {
    const reports = (h: string) => (h === 'b' ? undefined : { host: h, ...notRenewing });
    assert.equal(fenceVerdict({ ...base, renewAgeMs: 25_000, now, downHeard: () => now - (F - recoveryMarginMs(F)), reports }).action, 'fence');
    const v = fenceVerdict({ ...base, renewAgeMs: 25_000, now, downHeard: () => undefined, reports });
    assert.match((v as { why: string }).why, /member b is silent/);
  });

  it('a plain hold is bounded by the oldest down report: the watchdog holds no longer without a new one', () => {
    const heard = { b: now - 2500, c: now - 300 } as Record<string, number>;
    const v = fenceVerdict({ ...base, renewAgeMs: 20_000, now, reports: (h) => ({ host: h, renewAgeMs: 20_000, heardAt: heard[h]! }) });
    assert.equal(v.action, 'hold');
    assert.equal((v as { untilMs: number }).untilMs, now - 2500 + F - recoveryMarginMs(F));
  });
});
