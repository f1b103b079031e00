/**
 * xeno: the thin CLI. Names and output follow xm/xl; any unambiguous prefix of a command works, as in
 * xl. It only talks to xenod; nothing daemon-side is imported. Exit codes: see EXIT_CODES.
 */
import { CommanderError } from 'commander';
import { ApiError } from '../client/client.js';
import { EXIT_ERROR, EXIT_NO_DAEMON, EXIT_USAGE } from './examples.js';
import { COMMAND_NAMES } from './commands/index.js';
import { commandWord, expandPrefix } from './prefix.js';
import { buildProgram } from './program.js';

class UsageError extends Error {}

export async function main(argv: string[]): Promise<void> {
  let args: string[];
  try {
    args = expandPrefix(COMMAND_NAMES, argv);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  // Only the named command's family is built; help, completion and unknown words get all of them.
  await buildProgram(commandWord(args)).parseAsync(args, { from: 'user' });
}

main(process.argv.slice(2)).catch((e: unknown) => {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : EXIT_USAGE);
  process.stderr.write(`xeno: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(e instanceof UsageError ? EXIT_USAGE : e instanceof ApiError && e.code === 'NO_DAEMON' ? EXIT_NO_DAEMON : EXIT_ERROR);
});
