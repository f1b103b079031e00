import type { Command } from 'commander';

/** Global options that take a value: their value is not the command word. */
const VALUE_OPTIONS = new Set(['-s', '--socket']);

/** xl accepts any unambiguous prefix of a command name: rewrite it to the full name. */
export function expandPrefix(program: Command, argv: string[]): string[] {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) i += VALUE_OPTIONS.has(argv[i]!) ? 2 : 1;
  if (i >= argv.length) return argv;
  const word = argv[i]!;
  const names = program.commands.flatMap((c) => [c.name(), ...c.aliases()]);
  if (names.includes(word)) return argv;
  const matches = program.commands.filter((c) => c.name().startsWith(word));
  if (matches.length === 1) return [...argv.slice(0, i), matches[0]!.name(), ...argv.slice(i + 1)];
  if (matches.length > 1) throw new Error(`'${word}' is ambiguous: ${matches.map((c) => c.name()).join(', ')}`);
  return argv;
}
