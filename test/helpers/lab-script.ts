/**
 * The tutorial tests' runner: markdown steps joined into one bash script (each step announced, so
 * a failure says which one broke), run in a NetWorld's host namespace (or, without one, in this
 * process's own: see tutorial-pool.test.ts) from the repository, with
 * TMPDIR pointed at the test's own directory (whatever the lab's mktemp leaves is the test's to remove).
 */
import { spawn } from 'node:child_process';
import { REPO } from './harness.js';

export async function runSteps(netns: string | undefined, steps: string[], tmp: string): Promise<{ code: number; output: string }> {
  const script = ['set -euo pipefail', ...steps.map((b, i) => `echo "### step ${i + 1}"\n${b}`)].join('\n');
  const argv = [...(netns ? ['ip', 'netns', 'exec', netns] : []), 'bash', '-c', script];
  const child = spawn(argv[0]!, argv.slice(1), {
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

/** What the step whose block contains `has` printed (runSteps announces each step). */
export function stepOutput(output: string, steps: string[], has: string): string {
  const i = steps.findIndex((b) => b.includes(has));
  if (i < 0) throw new Error(`no step has ${JSON.stringify(has)}`);
  const start = output.indexOf(`### step ${i + 1}\n`);
  if (start < 0) return '';
  const end = output.indexOf(`### step ${i + 2}\n`, start);
  return output.slice(start, end < 0 ? undefined : end);
}

/** The fenced blocks of one language in a markdown text, in order. */
export function fencedBlocks(markdown: string, lang: string): string[] {
  return [...markdown.matchAll(new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\`$`, 'gm'))].map((m) => m[1]!);
}

/** A chapter of the tutorial ("## N. ..." up to the next "## "), or '' if it has none. */
export function chapter(markdown: string, n: number): string {
  const start = markdown.indexOf(`\n## ${n}. `);
  if (start < 0) return '';
  const next = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, next < 0 ? undefined : next);
}

/**
 * Chapter 0's blocks without its ./scripts/setup.sh: the suite's scripts/test.sh ran it already,
 * and run again from inside a test it may rebuild dist/ (or npm ci node_modules/) under other
 * running tests.
 */
export function prepareSteps(markdown: string): string[] {
  const prepare = fencedBlocks(chapter(markdown, 0), 'sh');
  if (!/^\.\/scripts\/setup\.sh$/m.test(prepare[0] ?? '')) throw new Error("chapter 0's first step is no longer ./scripts/setup.sh");
  prepare[0] = prepare[0]!.replace(/^\.\/scripts\/setup\.sh\n/m, '');
  return prepare;
}
