/**
 * A long operation answered as a stream of JSON lines (`application/x-ndjson`): progress lines at
 * most every 100 ms (the last one always sent), then one result or error line. Used by save,
 * restore and migrate when the request asks for `progress`.
 */
import type { FastifyReply } from 'fastify';
import { errorMessage, isXenoError } from '../../common/errors.js';

/** Run `work` answering with NDJSON progress lines and a final result or error line. */
export async function streamed<T, P extends object>(reply: FastifyReply, work: (onProgress: (p: P) => void) => Promise<T>): Promise<void> {
  void reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  const send = (obj: unknown) => {
    if (!raw.destroyed && !raw.writableEnded) raw.write(JSON.stringify(obj) + '\n');
  };
  let last = 0;
  let pending: P | undefined;
  const onProgress = (p: P) => {
    const now = Date.now();
    if (now - last >= 100) {
      last = now;
      pending = undefined;
      send({ event: 'progress', ...p });
    } else pending = p;
  };
  try {
    const result = await work(onProgress);
    if (pending) send({ event: 'progress', ...pending });
    send({ event: 'result', result });
  } catch (e) {
    const err = isXenoError(e) ? { code: e.code, message: e.message, details: e.details } : { code: 'INTERNAL', message: errorMessage(e) };
    send({ event: 'error', error: err });
  } finally {
    if (!raw.destroyed) raw.end();
  }
}
