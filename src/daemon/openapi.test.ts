import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { ERROR_CATALOGUE } from '../common/errors.js';
import { openApiDocument } from './openapi.js';

const DOC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../docs/openapi.json');

test('docs/openapi.json is the document generated from the route schemas (npm run openapi)', async () => {
  const generated = JSON.parse(JSON.stringify(await openApiDocument())) as unknown;
  assert.deepEqual(JSON.parse(readFileSync(DOC, 'utf8')), generated);
});

test('every route has a summary and every error code is documented', async () => {
  const doc = (await openApiDocument()) as { paths: Record<string, Record<string, { summary?: string }>>; 'x-error-codes': Array<{ code: string; doc: string }> };
  for (const [p, methods] of Object.entries(doc.paths)) {
    for (const [m, op] of Object.entries(methods)) assert.ok(op.summary, `${m.toUpperCase()} ${p} has no summary`);
  }
  assert.deepEqual(doc['x-error-codes'].map((e) => e.code).sort(), Object.keys(ERROR_CATALOGUE).sort());
});
