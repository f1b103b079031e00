/** Skips that cannot keep CI green: under CI=true only the README's documented reasons may skip. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/**
 * The README's "Documented skips": the reasons for which a machine may skip a test even under CI.
 * Any other skip fails under CI=true, so that CI never turns green by skipping.
 */
export function documentedSkips(): string[] {
  const text = readFileSync(path.join(REPO, 'README.md'), 'utf8');
  const section = /^### Documented skips\n([\s\S]*?)(?=^#|(?![\s\S]))/m.exec(text)?.[1] ?? '';
  return [...section.matchAll(/^- `([^`]+)`/gm)].map((m) => m[1]!);
}

function skipAllowed(reason: string): boolean {
  return process.env.CI !== 'true' || documentedSkips().some((d) => reason.includes(d));
}

/** Skip this test for `reason`; under CI=true fail it instead, unless the README documents the reason. */
export function skipOrFail(t: TestContext, reason: string): void {
  if (!skipAllowed(reason)) throw new Error(`skipped under CI, which is a failure: ${reason} (not a documented skip in README.md)`);
  t.skip(reason);
}

/**
 * For a describe/it `skip` option: `false` when `cond` is false, else `reason`; under CI=true an
 * undocumented reason throws at load time, failing the file.
 */
export function skipIf(cond: boolean, reason: string): false | string {
  if (!cond) return false;
  if (!skipAllowed(reason)) throw new Error(`skipped under CI, which is a failure: ${reason} (not a documented skip in README.md)`);
  return reason;
}

