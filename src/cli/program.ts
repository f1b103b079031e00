/** The CLI's whole command table with its help texts: what xeno runs, and what xeno(1) and completion read. */
import type { Command } from 'commander';
import { registerCommands } from './commands/index.js';
import { buildProgramWith } from './program-base.js';

/** `only`: a command word; when a family has that command, only that family is registered (commands/index.ts). */
export function buildProgram(only?: string): Command {
  return buildProgramWith(registerCommands, only);
}
