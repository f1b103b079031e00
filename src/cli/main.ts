/**
 * xeno: the thin CLI. Names and output follow xm/xl; any unambiguous prefix of a command works, as in
 * xl. It only talks to xenod; nothing daemon-side is imported.
 */
import { Command, CommanderError } from 'commander';
import { XENO_VERSION } from '../common/version.js';
import { registerCommands } from './commands/index.js';
import { expandPrefix } from './prefix.js';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('xeno')
    .description('xeno: manage virtual machines the Xen way (xm/xl commands), talking to xenod')
    .version(XENO_VERSION)
    .option('-s, --socket <path>', "xenod's socket (default $XENO_SOCKET or /run/xeno/xenod.sock)")
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  program.hook('preAction', (cmd) => {
    const sock = cmd.optsWithGlobals<{ socket?: string }>().socket;
    if (sock) process.env.XENO_SOCKET = sock;
  });
  registerCommands(program);
  for (const c of program.commands) c.exitOverride();
  await program.parseAsync(expandPrefix(program, argv), { from: 'user' });
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  process.stderr.write(`xeno: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
