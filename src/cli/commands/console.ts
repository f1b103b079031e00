/** `xeno console DOM`: the guest's serial line through the daemon; Ctrl-] detaches. */
import type { Command } from 'commander';
import { domPath } from '../../client/client.js';
import { api } from '../context.js';

const CTRL_RIGHT_BRACKET = 0x1d;

export async function attachConsole(dom: string, history: boolean): Promise<void> {
  const stream = await api().upgrade(domPath(dom, `/console${history ? '?history=1' : ''}`), 'xeno-console');
  const stdin = process.stdin;
  const tty = stdin.isTTY;
  await new Promise<void>((resolve) => {
    let finished = false;
    const done = () => {
      if (finished) return;
      finished = true;
      if (tty) stdin.setRawMode(false);
      stdin.pause();
      stream.destroy();
      resolve();
    };
    stream.on('data', (d: Buffer) => process.stdout.write(d));
    stream.on('close', done);
    stream.on('error', done);
    if (tty) stdin.setRawMode(true);
    stdin.on('data', (d: Buffer) => {
      const i = d.indexOf(CTRL_RIGHT_BRACKET);
      if (i >= 0) {
        if (i > 0) stream.write(d.subarray(0, i));
        done();
        return;
      }
      stream.write(d);
    });
    // Without a TTY, stdin's end does not detach: keep streaming until interrupted. `on`, not
    // `once`: timeout(1) signals the child and its process group, so a second SIGTERM may follow.
    process.on('SIGINT', done);
    process.on('SIGTERM', done);
  });
}

export function registerConsoleCommands(program: Command): void {
  program
    .command('console')
    .description("attach to a domain's console (Ctrl-] detaches)")
    .argument('<dom>', 'name or id')
    .option('--history', 'print the kept console log first')
    .action(async (dom: string, opts: { history?: boolean }) => {
      await attachConsole(dom, opts.history ?? false);
      process.exit(0); // detached: nothing of the session may keep the process alive
    });
}
