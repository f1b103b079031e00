/** The OpenAPI document, generated from the route schemas (never written by hand). */
import type { Logger } from 'pino';
import type { DaemonConfig } from '../model/daemon-config.js';
import type { Toolstack } from '../toolstack/toolstack.js';
import { buildApp, errorCodes } from './app.js';

export async function openApiDocument(): Promise<Record<string, unknown>> {
  // Handlers are never called here: only the route table and its schemas are read. Whatever a
  // route family touches at registration gets an inert stand-in.
  const app = await buildApp({
    toolstack: inert() as Toolstack,
    config: inert() as DaemonConfig,
    log: inert() as Logger,
    logFile: '',
    services: inert() as Record<string, unknown>,
  }, { openapi: true });
  await app.ready();
  const doc = app.swagger() as Record<string, unknown>;
  await app.close();
  return { ...doc, 'x-error-codes': errorCodes };
}

/** A value any property of which, called or not, is another such value. */
function inert(): unknown {
  const fn = () => undefined;
  return new Proxy(fn, {
    get: (_t, prop) => (prop === Symbol.toPrimitive ? () => '' : prop === 'then' ? undefined : inert()),
    apply: () => inert(),
    construct: () => inert() as object,
  });
}
