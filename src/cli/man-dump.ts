/** Writes the generated man pages: `node dist/src/cli/man-dump.js [DIR]` (default docs/man). */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { manXeno, manXenoCfg, manXenod } from './manpage.js';
import { buildProgram } from './program.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export function manPages(): Record<string, string> {
  const sxp = readFileSync(path.join(REPO_ROOT, 'examples/xend-config.sxp'), 'utf8');
  return { 'xeno.1': manXeno(buildProgram()), 'xenod.8': manXenod(sxp), 'xeno.cfg.5': manXenoCfg() };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const dir = path.resolve(process.argv[2] ?? path.join(REPO_ROOT, 'docs/man'));
  mkdirSync(dir, { recursive: true });
  for (const [f, text] of Object.entries(manPages())) writeFileSync(path.join(dir, f), text);
}
