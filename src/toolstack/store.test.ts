import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import type { DomainConfig } from '../model/domain-config.js';
import { StateStore, type DomainRecord } from './store.js';

const config = (name: string, memory = 64): DomainConfig => ({
  name, type: 'pv', memory, maxmem: memory, vcpus: 1, maxvcpus: 1, kernel: '/k', disks: [], vifs: [],
  onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
});
const record = (id: number, name: string): DomainRecord => ({
  id, name, uuid: `u-${id}`, config: config(name), state: 'running', pid: 100 + id, machineType: 'pc', accel: 'tcg',
  startTime: 1, runDir: `/run/${name}`, extra: { pins: { '0': '1' } },
});

test('the records kept in memory are what SQLite holds, after every kind of write, in id order', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-store-'));
  try {
    const file = path.join(dir, 'x.db');
    const s = new StateStore(file);
    s.insert(record(3, 'c'));
    s.insert(record(1, 'a'));
    s.insert(record(2, 'b'));
    s.update(2, { state: 'paused', config: config('b', 128), extra: { x: 1 }, pid: null });
    s.remove(3);
    assert.throws(() => s.insert(record(4, 'a')), /UNIQUE/, 'a name taken twice is refused...');
    assert.throws(() => s.update(2, { name: 'a' }), /UNIQUE/);
    // ...and leaves the memory as SQLite: what a fresh store reads from the file
    const fresh = new StateStore(file);
    assert.deepEqual(s.all(), fresh.all());
    assert.deepEqual(s.all().map((r) => r.id), [1, 2]);
    assert.deepEqual(s.get(2), fresh.get(2));
    assert.equal(s.get(2)!.config.memory, 128);
    assert.equal(s.byName('b')!.state, 'paused');
    assert.equal(s.get(2)!.pid, null);
    assert.equal(s.byName('c'), undefined);
    const db = new Database(file, { readonly: true });
    assert.deepEqual(JSON.parse((db.prepare(`SELECT extra FROM domains WHERE id = 2`).get() as { extra: string }).extra), { x: 1 });
    db.close();
    fresh.close();
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a record read is a copy: changing it changes nothing stored; its config and extra cannot be edited in place', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'xeno-store-'));
  try {
    const s = new StateStore(path.join(dir, 'x.db'));
    const mine = record(1, 'a');
    s.insert(mine);
    mine.config.memory = 999; // the caller's own object stays the caller's
    const r = s.get(1)!;
    assert.equal(r.config.memory, 64);
    r.state = 'paused';
    r.config = { ...r.config, memory: 32 };
    assert.equal(s.get(1)!.state, 'running');
    assert.equal(s.all()[0]!.config.memory, 64);
    assert.throws(() => {
      (s.get(1)!.config as { memory: number }).memory = 1;
    }, TypeError);
    assert.throws(() => {
      ((s.get(1)!.extra.pins as Record<string, string>)['0'] = '2');
    }, TypeError);
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
