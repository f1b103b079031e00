/** What every CLI command uses: the client, and the one way output and errors are printed. */
import { XenoClient } from '../client/client.js';

let client: XenoClient | undefined;

export function api(): XenoClient {
  client ??= new XenoClient();
  return client;
}

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

export function warn(text: string): void {
  process.stderr.write(`${text}\n`);
}

export function json(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}
