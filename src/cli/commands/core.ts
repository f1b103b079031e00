/** The core families (names.ts: CORE_FAMILIES) joined to their registration, for the CLI's small bundle. */
import { registerDomainCommands } from './domain.js';
import { registerRuntimeCommands } from './runtime.js';
import { FAMILY_COMMANDS } from './names.js';
import { familiesRegistrar, type Family, type Registrar } from './registrar.js';

export const CORE_COMMAND_FAMILIES: readonly Family[] = [
  { key: 'domain', commands: FAMILY_COMMANDS.domain, register: registerDomainCommands },
  { key: 'runtime', commands: FAMILY_COMMANDS.runtime, register: registerRuntimeCommands },
];

export const registerCoreCommands: Registrar = familiesRegistrar(CORE_COMMAND_FAMILIES);
