/**
 * The tutorial tests' runner: markdown steps joined into one bash script (each step announced, so
 * a failure says which one broke), run in a NetWorld's host namespace from the repository, with
 * TMPDIR pointed at the test's own directory (whatever the lab's mktemp leaves is the test's to remove).
 */
import { spawn } from 'node:child_process';
import { REPO } from './harness.js';

export async function runSteps(netns: string, steps: string[], tmp: string): Promise<{ code: number; output: string }> {
  const script = ['set -euo pipefail', ...steps.map((b, i) => `echo "### step ${i + 1}"\n${b}`)].join('\n');
  const child = spawn('ip', ['netns', 'exec', netns, 'bash', '-c', script], {
    cwd: REPO,
    env: { ...process.env, TMPDIR: tmp, XENO_SOCKET: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => (output += String(d)));
  child.stderr.on('data', (d) => (output += String(d)));
  const code = await new Promise<number>((r) => child.on('close', (c) => r(c ?? 1)));
  return { code, output };
}
