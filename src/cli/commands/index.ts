/** The command table: every command family joined to its registration. */
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
import { COMMAND_NAMES, FAMILY_COMMANDS, type FamilyKey } from './names.js';
import { familiesRegistrar, type Family, type Registrar } from './registrar.js';

const REGISTER: Record<FamilyKey, (p: Command) => void> = {
  domain: registerDomainCommands, host: registerHostCommands, network: registerNetworkCommands, console: registerConsoleCommands,
  runtime: registerRuntimeCommands, block: registerBlockCommands, saveRestore: registerSaveRestoreCommands,
  migration: registerMigrationCommands, snapshot: registerSnapshotCommands, top: registerTopCommands, manage: registerManageCommands,
  web: registerWebCommands, poolAdmin: registerPoolAdminCommands, pool: registerPoolCommands, evacuate: registerEvacuateCommands,
  images: registerImageCommands,
};

/**
 * Every command family with the commands (and aliases) it registers, in help order. A command line
 * that names one command registers its family only: `xeno list` need not build the other 50
 * commands' options and help (some 5 ms of its start).
 */
export const COMMAND_FAMILIES: readonly Family[] = (Object.keys(FAMILY_COMMANDS) as FamilyKey[]).map((k) => ({ key: k, commands: FAMILY_COMMANDS[k], register: REGISTER[k] }));

export { COMMAND_NAMES };

/** Register every family, or (given the command a line names) only the family that has it. */
export const registerCommands: Registrar = familiesRegistrar(COMMAND_FAMILIES);
