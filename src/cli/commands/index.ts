/** The command table: every command family, one line each. */
import type { Command } from 'commander';
import { registerConsoleCommands } from './console.js';
import { registerDomainCommands } from './domain.js';
import { registerHostCommands } from './host.js';
import { registerManageCommands } from './manage.js';
import { registerImageCommands } from './images.js';
import { registerMigrationCommands } from './migration.js';
import { registerNetworkCommands } from './network.js';
import { registerRuntimeCommands } from './runtime.js';
import { registerSaveRestoreCommands } from './save-restore.js';
import { registerTopCommands } from './top.js';
import { registerWebCommands } from './web.js';

export function registerCommands(program: Command): void {
  registerDomainCommands(program);
  registerHostCommands(program);
  registerNetworkCommands(program);
  registerConsoleCommands(program);
  registerRuntimeCommands(program);
  registerSaveRestoreCommands(program);
  registerMigrationCommands(program);
  registerTopCommands(program);
  registerManageCommands(program);
  registerWebCommands(program);
  registerImageCommands(program);
}
