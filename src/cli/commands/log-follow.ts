/** `xeno log -f`: the daemon streams its log (NDJSON lines) until interrupted. */
import { api, out } from '../context.js';

export async function followLog(lines: number, asJson: boolean): Promise<void> {
  const stop = () => process.exit(0);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  let failed = '';
  await api().requestLines('GET', `/v1/log/follow?lines=${lines}`, undefined, (l) => {
    if (!l) return;
    if (asJson) return out(l);
    try {
      out((JSON.parse(l) as { line: string }).line);
    } catch {
      failed = l;
    }
  });
  if (failed) throw new Error(`xenod sent an unreadable log line: ${failed}`);
}
