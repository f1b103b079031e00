/**
 * xeno: the thin CLI. Names and output follow xm/xl; any unambiguous prefix of a command works, as in
 * xl. It only talks to xenod; nothing daemon-side is imported. Exit codes: see EXIT_CODES.
 * Two entries run it: main.ts (every command) and main-core.ts (the core families, a smaller bundle).
 */
import { CommanderError, type Command } from 'commander';
import { ApiError } from '../client/client.js';
import { EXIT_ERROR, EXIT_NO_DAEMON, EXIT_USAGE } from './examples.js';
import { COMMAND_NAMES } from './commands/names.js';
import { commandWord, expandPrefix } from './prefix.js';

class UsageError extends Error {}

async function main(argv: string[], buildProgram: (only?: string) => Command): Promise<void> {
  let args: string[];
  try {
    args = expandPrefix(COMMAND_NAMES, argv);
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  // Only the named command's family is built; help, completion and unknown words get all of them.
  await buildProgram(commandWord(args)).parseAsync(args, { from: 'user' });
}

/** Runs the command line with the program `buildProgram` makes, and exits. */
export function runCli(buildProgram: (only?: string) => Command): void {
  // Exits once the command is done, with the code it set (process.exitCode): the end of an emptied event
  // loop would also tear the heap and V8's threads down first, some 2 ms of every command. Every command
  // awaits its own work (console, top and log -f until they end); stdout and stderr write synchronously (Linux).
  main(process.argv.slice(2), buildProgram).then(() => process.exit()).catch((e: unknown) => {
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : EXIT_USAGE);
    process.stderr.write(`xeno: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(e instanceof UsageError ? EXIT_USAGE : e instanceof ApiError && e.code === 'NO_DAEMON' ? EXIT_NO_DAEMON : EXIT_ERROR);
  });
}
