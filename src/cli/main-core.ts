/**
 * The CLI's entry for the core families' commands (commands/names.ts: CORE_FAMILIES), bundled apart
 * so that `xeno list` loads only them; the loader (packaging/cli/load.cjs) picks it by the command word.
 */
import { registerCoreCommands } from './commands/core.js';
import { buildProgramWith } from './program-base.js';
import { runCli } from './run.js';

runCli((only) => buildProgramWith(registerCoreCommands, only));
