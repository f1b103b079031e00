/**
 * S-expressions as in xend-config.sxp: `(key value)` forms, values are atoms, quoted strings
 * (single or double quotes, spaces allowed, backslash escapes) or nested lists; `#` starts a
 * comment at a token boundary. Errors are XenoError('CONFIG_SYNTAX', `${file}:${line}:${col}: ...`).
 */

import { XenoError } from '../common/errors.js';

export interface SxpPos {
  line: number;
  col: number;
}

export interface SxpAtom extends SxpPos {
  kind: 'atom';
  value: string;
}

export interface SxpString extends SxpPos {
  kind: 'string';
  value: string;
}

export interface SxpList extends SxpPos {
  kind: 'list';
  items: SxpNode[];
}

export type SxpNode = SxpAtom | SxpString | SxpList;

const ESCAPES: Record<string, string> = {
  '\\': '\\',
  "'": "'",
  '"': '"',
  n: '\n',
  t: '\t',
  r: '\r',
};

const DELIMITERS = new Set(['(', ')', '"', "'", ' ', '\t', '\r', '\n', '\f', '\v']);

/** Parses the whole text into its top-level expressions. */
export function parseSxp(text: string, file = '<string>'): SxpNode[] {
  let pos = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  let col = 1;
  const fail = (l: number, c: number, msg: string): never => {
    throw new XenoError('CONFIG_SYNTAX', `${file}:${l}:${c}: ${msg}`, { file, line: l, col: c });
  };
  const advance = (): string => {
    const ch = text[pos++]!;
    if (ch === '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
    return ch;
  };

  const top: SxpNode[] = [];
  const stack: SxpList[] = [];
  const push = (n: SxpNode): void => {
    if (stack.length) stack[stack.length - 1]!.items.push(n);
    else top.push(n);
  };

  while (pos < text.length) {
    const ch = text[pos]!;
    const l = line;
    const c = col;
    if (/\s/.test(ch)) {
      advance();
    } else if (ch === '#') {
      while (pos < text.length && text[pos] !== '\n') advance();
    } else if (ch === '(') {
      advance();
      const list: SxpList = { kind: 'list', items: [], line: l, col: c };
      push(list);
      stack.push(list);
    } else if (ch === ')') {
      if (!stack.length) fail(l, c, "unexpected ')' (no list is open)");
      advance();
      stack.pop();
    } else if (ch === '"' || ch === "'") {
      advance();
      let value = '';
      for (;;) {
        if (pos >= text.length) fail(l, c, `unterminated string (missing closing ${ch})`);
        const d = advance();
        if (d === ch) break;
        if (d !== '\\') {
          value += d;
          continue;
        }
        if (pos >= text.length) fail(l, c, `unterminated string (missing closing ${ch})`);
        const e = advance();
        // Unknown escapes keep their backslash, so regular expressions like '^a\.b$' survive.
        value += Object.hasOwn(ESCAPES, e) ? ESCAPES[e] : `\\${e}`;
      }
      push({ kind: 'string', value, line: l, col: c });
    } else {
      let value = '';
      while (pos < text.length && !DELIMITERS.has(text[pos]!)) value += advance();
      push({ kind: 'atom', value, line: l, col: c });
    }
  }
  if (stack.length) {
    const open = stack[stack.length - 1]!;
    fail(line, col, `expected ')' to close the list opened at ${open.line}:${open.col}, found end of file`);
  }
  return top;
}

/** The text of an atom or string; undefined for a list. */
export function sxpText(n: SxpNode): string | undefined {
  return n.kind === 'list' ? undefined : n.value;
}
