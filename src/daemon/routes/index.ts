/** Every route family, one line each. */
import type { FastifyInstance } from 'fastify';
import type { DaemonContext } from '../context.js';
import { registerBlockRoutes } from './block.js';
import { registerConsoleRoutes } from './console.js';
import { registerDomainRoutes } from './domains.js';
import { registerHostRoutes } from './host.js';
import { registerMigrationRoutes } from './migration.js';
import { registerNetworkRoutes } from './network.js';
import { registerOperateRoutes } from './operate.js';
import { registerEvacuateRoute } from '../pool/evacuate-route.js';
import { registerPoolRoutes } from '../pool/routes.js';
import { registerRuntimeRoutes } from './runtime.js';
import { registerSaveRestoreRoutes } from './save-restore.js';
import { registerStatsRoutes } from './stats.js';

/**
 * `door`: 'unix' for the API socket; 'web' for the web console's copy of the same routes under
 * /api (behind its session check), which leaves out what belongs to the daemon once: the raw
 * console upgrade and the start/stop hooks of the managed save.
 */
export function registerRoutes(app: FastifyInstance, ctx: DaemonContext, door: 'unix' | 'web' = 'unix'): void {
  if (door === 'unix') registerPoolRoutes(app, ctx); // first: its hooks (forwarding) cover every route
  registerHostRoutes(app, ctx);
  registerNetworkRoutes(app, ctx);
  registerDomainRoutes(app, ctx);
  registerConsoleRoutes(app, ctx, door);
  registerRuntimeRoutes(app, ctx);
  registerBlockRoutes(app, ctx);
  registerSaveRestoreRoutes(app, ctx, door);
  registerMigrationRoutes(app, ctx);
  if (door === 'unix') registerEvacuateRoute(app, ctx);
  registerStatsRoutes(app, ctx);
  registerOperateRoutes(app, ctx); // after save-restore: its start-up hook runs after the managed restore
}
