/** Every route family, one line each. */
import type { FastifyInstance } from 'fastify';
import type { DaemonContext } from '../context.js';
import { registerConsoleRoutes } from './console.js';
import { registerDomainRoutes } from './domains.js';
import { registerHostRoutes } from './host.js';
import { registerMigrationRoutes } from './migration.js';
import { registerNetworkRoutes } from './network.js';
import { registerRuntimeRoutes } from './runtime.js';
import { registerSaveRestoreRoutes } from './save-restore.js';
import { registerStatsRoutes } from './stats.js';

export function registerRoutes(app: FastifyInstance, ctx: DaemonContext): void {
  registerHostRoutes(app, ctx);
  registerNetworkRoutes(app, ctx);
  registerDomainRoutes(app, ctx);
  registerConsoleRoutes(app, ctx);
  registerRuntimeRoutes(app, ctx);
  registerSaveRestoreRoutes(app, ctx);
  registerMigrationRoutes(app, ctx);
  registerStatsRoutes(app, ctx);
}
