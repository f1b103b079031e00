/** What every route handler may use: built once in the composition root (main.ts). */
import type { Logger } from 'pino';
import type { DaemonConfig } from '../model/daemon-config.js';
import type { Toolstack } from '../toolstack/toolstack.js';

export interface DaemonContext {
  toolstack: Toolstack;
  config: DaemonConfig;
  log: Logger;
  logFile: string;
  /** Feature services registered by the composition root (network manager, ...). */
  services: Record<string, unknown>;
}
