/** `npm run openapi`: prints docs/openapi.json. */
import { openApiDocument } from './openapi.js';

process.stdout.write(JSON.stringify(await openApiDocument(), null, 2) + '\n');
