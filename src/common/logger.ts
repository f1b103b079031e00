/** The daemon's logger: pino, to stderr and to its log file at once. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import pino, { type Logger } from 'pino';

export function createLogger(level: string, logFile: string): Logger {
  mkdirSync(path.dirname(logFile), { recursive: true });
  const streams = pino.multistream([
    { stream: pino.destination({ fd: 2, sync: true }), level: level as pino.Level },
    { stream: pino.destination({ dest: logFile, sync: true, mkdir: true }), level: level as pino.Level },
  ]);
  return pino({ level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, streams);
}
