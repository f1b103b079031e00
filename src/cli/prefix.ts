import type { Command } from 'commander';

/** Global options that take a value: their value is not the command word. */
const VALUE_OPTIONS = new Set(['-s', '--socket']);

export type CommandNames = ReadonlyArray<{ name: string; aliases: readonly string[] }>;

/** The names of a program's commands (what expandPrefix takes). */
export function namesOf(program: Command): CommandNames {
  return program.commands.map((c) => ({ name: c.name(), aliases: c.aliases() }));
}

/** Where the command word is in argv (after the global options), or -1. */
function commandIndex(argv: readonly string[]): number {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += VALUE_OPTIONS.has(argv[i]!) ? 2 : 1;
  return i < argv.length ? i : -1;
}

/** The command word of a command line (`list` in `-s S list -l`), if any. */
export function commandWord(argv: readonly string[]): string | undefined {
  const i = commandIndex(argv);
  return i < 0 ? undefined : argv[i];
}

/** xl accepts any unambiguous prefix of a command name: rewrite it to the full name. */
export function expandPrefix(commands: CommandNames, argv: string[]): string[] {
  const i = commandIndex(argv);
  if (i < 0) return argv;
  const word = argv[i]!;
  if (commands.some((c) => c.name === word || c.aliases.includes(word))) return argv;
  const matches = commands.filter((c) => c.name.startsWith(word));
  if (matches.length === 1) return [...argv.slice(0, i), matches[0]!.name, ...argv.slice(i + 1)];
  if (matches.length > 1) throw new Error(`'${word}' is ambiguous: ${matches.map((c) => c.name).join(', ')}`);
  return argv;
}
