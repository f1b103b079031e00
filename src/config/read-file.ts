/** The one I/O helper of config/: reading a config file as UTF-8 text. */

import { readFileSync } from 'node:fs';
import { XenoError } from '../common/errors.js';

/** Reads `file`; NO_SUCH_FILE when it does not exist, CONFIG_INVALID when it cannot be read. */
export function readConfigFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new XenoError('NO_SUCH_FILE', `${file}: no such file`, { file });
    throw new XenoError('CONFIG_INVALID', `${file}: cannot read: ${(err as Error).message}`, { file });
  }
}
