import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_MIRROR, parseDeb822, parseSourcesList, pickMirror } from './apt-mirror.js';

test('deb822 .sources: the suite itself wins over -security, disabled stanzas skipped', () => {
  const s = parseDeb822(`Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main

Types: deb-src deb
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib

Enabled: no
Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
`);
  assert.equal(pickMirror(s, 'bookworm'), 'http://mirror.example/debian');
});

test('sources.list one-line entries with options; nothing usable: deb.debian.org', () => {
  const s = parseSourcesList('# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\ndeb-src http://src.example bookworm main\n');
  assert.equal(pickMirror(s, 'bookworm'), 'http://m.example/debian');
  assert.equal(pickMirror(parseSourcesList('deb cdrom:[x]/ bookworm main'), 'bookworm'), DEFAULT_MIRROR);
});
