/**
 * Lexer for the xl.cfg(5) / xm config syntax: `KEY = VALUE` assignments, strings in single or double
 * quotes, decimal / 0x-hex / 0-octal numbers, `[ ... ]` lists, `#` comments.
 *
 * Characters that are not part of the syntax (the Python operators xm files used: `+ - . ( ) : %` ...)
 * are returned as `invalid` tokens so that the parser can say what it expected instead; only errors
 * inside a token (bad number, unterminated string, bad escape) are thrown from here.
 */

import { XenoError } from '../common/errors.js';

export type TokenKind =
  | 'ident'
  | 'string'
  | 'number'
  | '='
  | '['
  | ']'
  | ','
  | ';'
  | 'newline'
  | 'eof'
  | 'invalid';

export interface Token {
  kind: TokenKind;
  /** The source text of the token (for strings: with the quotes). */
  text: string;
  /** Decoded value of a string or number token. */
  value?: string | number;
  /** 1-based position of the token's first character. */
  line: number;
  col: number;
}

const IDENT_START = /[A-Za-z_]/;
const IDENT_CHAR = /[A-Za-z0-9_]/;
const DIGIT = /[0-9]/;

/** Characters that suggest a Python expression: used to add a hint to syntax errors. */
export const PYTHON_CHARS = '+-.():%*/{}<>!&|~@';

export function syntaxError(file: string, line: number, col: number, msg: string): XenoError {
  return new XenoError('CONFIG_SYNTAX', `${file}:${line}:${col}: ${msg}`, { file, line, col });
}

/** Human description of a token for "expected X, found Y" messages. */
export function describeToken(t: Token): string {
  switch (t.kind) {
    case 'ident':
      return `identifier '${t.text}'`;
    case 'string':
      return `string ${t.text.length > 40 ? t.text.slice(0, 37) + '...' : t.text}`;
    case 'number':
      return `number ${t.text}`;
    case 'newline':
      return 'end of line';
    case 'eof':
      return 'end of file';
    default:
      return `'${t.text}'`;
  }
}

export class XlCfgLexer {
  private pos = 0;
  private line = 1;
  private col = 1;

  constructor(
    private readonly text: string,
    readonly file: string = '<string>',
  ) {
    // A UTF-8 byte-order mark is not part of the text.
    if (text.charCodeAt(0) === 0xfeff) this.pos = 1;
  }

  private peekChar(offset = 0): string {
    return this.text[this.pos + offset] ?? '';
  }

  private advance(): string {
    const c = this.text[this.pos++] ?? '';
    if (c === '\n') {
      this.line++;
      this.col = 1;
    } else {
      this.col++;
    }
    return c;
  }

  private error(line: number, col: number, msg: string): XenoError {
    return syntaxError(this.file, line, col, msg);
  }

  /** Returns the next token; after the end of the text, returns `eof` forever. */
  next(): Token {
    // Skip blanks and comments (not newlines: they end statements).
    for (;;) {
      const c = this.peekChar();
      if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
        this.advance();
      } else if (c === '#') {
        while (this.pos < this.text.length && this.peekChar() !== '\n') this.advance();
      } else {
        break;
      }
    }
    const line = this.line;
    const col = this.col;
    if (this.pos >= this.text.length) return { kind: 'eof', text: '', line, col };
    const c = this.peekChar();

    if (c === '\n') {
      this.advance();
      return { kind: 'newline', text: '\n', line, col };
    }
    if (c === '=' || c === '[' || c === ']' || c === ',' || c === ';') {
      this.advance();
      return { kind: c, text: c, line, col };
    }
    if (IDENT_START.test(c)) {
      const start = this.pos;
      while (IDENT_CHAR.test(this.peekChar())) this.advance();
      return { kind: 'ident', text: this.text.slice(start, this.pos), line, col };
    }
    if (DIGIT.test(c)) return this.number(line, col);
    if (c === '"' || c === "'") return this.string(line, col);

    // Anything else: let the parser report it with what it expected.
    const cp = this.text.codePointAt(this.pos) ?? 0;
    const ch = String.fromCodePoint(cp);
    for (let i = 0; i < ch.length; i++) this.advance();
    return { kind: 'invalid', text: ch, line, col };
  }

  private number(line: number, col: number): Token {
    const start = this.pos;
    while (IDENT_CHAR.test(this.peekChar())) this.advance();
    const text = this.text.slice(start, this.pos);
    let value: number;
    if (/^0[xX][0-9a-fA-F]+$/.test(text)) {
      value = parseInt(text.slice(2), 16);
    } else if (/^0[0-7]+$/.test(text)) {
      value = parseInt(text.slice(1), 8);
    } else if (/^(0|[1-9][0-9]*)$/.test(text)) {
      value = parseInt(text, 10);
    } else {
      throw this.error(
        line,
        col,
        `invalid number '${text}' (numbers are decimal, 0x-hex or 0-octal; sizes with units must be quoted)`,
      );
    }
    if (!Number.isSafeInteger(value)) throw this.error(line, col, `number '${text}' is too large`);
    return { kind: 'number', text, value, line, col };
  }

  private string(line: number, col: number): Token {
    const start = this.pos;
    const quote = this.advance();
    let value = '';
    for (;;) {
      if (this.pos >= this.text.length || this.peekChar() === '\n') {
        throw this.error(line, col, `unterminated string (missing closing ${quote})`);
      }
      const escLine = this.line;
      const escCol = this.col;
      const c = this.advance();
      if (c === quote) break;
      if (c !== '\\') {
        value += c;
        continue;
      }
      if (this.pos >= this.text.length || this.peekChar() === '\n') {
        throw this.error(line, col, `unterminated string (missing closing ${quote})`);
      }
      const e = this.advance();
      switch (e) {
        case '\\':
        case "'":
        case '"':
          value += e;
          break;
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case 'x': {
          const hex = this.text.slice(this.pos, this.pos + 2);
          if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
            throw this.error(escLine, escCol, `invalid escape '\\x${hex}' in string (expected two hex digits)`);
          }
          this.advance();
          this.advance();
          value += String.fromCharCode(parseInt(hex, 16));
          break;
        }
        default:
          throw this.error(
            escLine,
            escCol,
            `invalid escape '\\${e}' in string (allowed: \\\\ \\' \\" \\n \\t \\r \\xHH)`,
          );
      }
    }
    return { kind: 'string', text: this.text.slice(start, this.pos), value, line, col };
  }
}
