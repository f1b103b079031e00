/** The command table: every command family, one line each. */
import type { Command } from 'commander';
import { registerConsoleCommands } from './console.js';
import { registerDomainCommands } from './domain.js';
import { registerHostCommands } from './host.js';
import { registerRuntimeCommands } from './runtime.js';

export function registerCommands(program: Command): void {
  registerDomainCommands(program);
  registerHostCommands(program);
  registerConsoleCommands(program);
  registerRuntimeCommands(program);
}
