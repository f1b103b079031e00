/** The CLI's entry with every command (the loader runs main-core.ts for the core families' commands). */
import { buildProgram } from './program.js';
import { runCli } from './run.js';

runCli(buildProgram);
