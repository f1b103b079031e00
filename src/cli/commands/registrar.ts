/** How a CLI entry registers its families: all of them, or only the one a command line names. */
import type { Command } from 'commander';
import type { FamilyKey } from './names.js';

export interface Family {
  key: FamilyKey;
  commands: ReadonlyArray<readonly [string, ...string[]]>;
  register: (p: Command) => void;
}

/** Registers `only`'s family, or every family given (help, completion, an unknown word). */
export type Registrar = (program: Command, only?: string) => void;

export function familiesRegistrar(families: readonly Family[]): Registrar {
  return (program, only) => {
    const family = only === undefined ? undefined : families.find((f) => f.commands.some((c) => c.includes(only)));
    for (const f of family ? [family] : families) f.register(program);
  };
}
