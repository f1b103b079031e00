/** The command table: every command family, one line each. */
import type { Command } from 'commander';
import { registerBlockCommands } from './block.js';
import { registerConsoleCommands } from './console.js';
import { registerDomainCommands } from './domain.js';
import { registerEvacuateCommands } from './evacuate.js';
import { registerHostCommands } from './host.js';
import { registerManageCommands } from './manage.js';
import { registerImageCommands } from './images.js';
import { registerMigrationCommands } from './migration.js';
import { registerNetworkCommands } from './network.js';
import { registerPoolAdminCommands } from './pool-admin.js';
import { registerPoolCommands } from './pool.js';
import { registerRuntimeCommands } from './runtime.js';
import { registerSaveRestoreCommands } from './save-restore.js';
import { registerSnapshotCommands } from './snapshot.js';
import { registerTopCommands } from './top.js';
import { registerWebCommands } from './web.js';

export function registerCommands(program: Command): void {
  registerDomainCommands(program);
  registerHostCommands(program);
  registerNetworkCommands(program);
  registerConsoleCommands(program);
  registerRuntimeCommands(program);
  registerBlockCommands(program);
  registerSaveRestoreCommands(program);
  registerMigrationCommands(program);
  registerSnapshotCommands(program);
  registerTopCommands(program);
  registerManageCommands(program);
  registerWebCommands(program);
  registerPoolAdminCommands(program);
  registerPoolCommands(program);
  registerEvacuateCommands(program);
  registerImageCommands(program);
}
