import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BACKOFF_CAP_S, decideRestart, historyOf, restartInfo } from './restart-policy.js';
import type { DomainRecord } from './store.js';

const h = (recent: number[]) => ({ total: recent.length, recent });

describe('decideRestart', () => {
  it('restarts at once when nothing restarted within the window', () => {
    assert.deepEqual(decideRestart(h([]), 1000, 5, 60), { kind: 'now' });
    assert.deepEqual(decideRestart(h([100, 200]), 1000, 5, 60), { kind: 'now' }, 'old restarts are out of the window');
  });

  it('backs off 1, 2, 4 ... seconds, capped', () => {
    assert.deepEqual(decideRestart(h([999]), 1000, 5, 60), { kind: 'later', delayS: 1 });
    assert.deepEqual(decideRestart(h([998, 999]), 1000, 5, 60), { kind: 'later', delayS: 2 });
    assert.deepEqual(decideRestart(h([997, 998, 999]), 1000, 5, 60), { kind: 'later', delayS: 4 });
    const many = Array.from({ length: 20 }, (_, i) => 990 + i * 0.1);
    assert.deepEqual(decideRestart(h(many), 1000, 0, 60), { kind: 'later', delayS: BACKOFF_CAP_S }, 'limit 0: no limit, the cap holds');
  });

  it('stops after the limit within the window, saying how many in how long', () => {
    assert.deepEqual(decideRestart(h([970, 980, 990, 995, 999]), 1000, 5, 60), { kind: 'stop', count: 5, spanS: 30 });
    assert.deepEqual(decideRestart(h([930, 980, 990, 995, 999]), 1000, 5, 60), { kind: 'later', delayS: 8 }, 'one fell out of the window');
    assert.deepEqual(decideRestart(h([999]), 1000, 1, 60), { kind: 'stop', count: 1, spanS: 1 });
  });
});

describe('restart history in the record', () => {
  it('reads an absent or partial history as empty, and shows nothing for a never-restarted domain', () => {
    assert.deepEqual(historyOf({ extra: {} }), { total: 0, recent: [] });
    assert.deepEqual(restartInfo({ extra: {} } as DomainRecord), {});
    const r = { extra: { restarts: { total: 3, recent: [1, 2], lastReason: 'crash', lastAt: 2 } } } as unknown as DomainRecord;
    assert.deepEqual(restartInfo(r), { restarts: 3, lastRestartReason: 'crash', lastRestartAt: 2, restartDueAt: undefined, restartStopped: undefined });
  });
});
