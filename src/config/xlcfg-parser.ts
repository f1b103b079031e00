/**
 * Parser for the xl.cfg(5) syntax (also what xl accepts of the old xm files):
 *
 *   file       := { sep } { assignment ( sep | EOF ) { sep } } EOF        sep := NEWLINE | ';'
 *   assignment := IDENT '=' value
 *   value      := STRING | NUMBER | '[' [ value { ',' value } [ ',' ] ] ']'   (newlines ignored inside)
 *
 * Python constructs are syntax errors with file:line:col. A key assigned twice keeps the last value
 * (as xl does).
 */

import { MAX_XLCFG_NESTING } from './validate-fields.js';
import { describeToken, PYTHON_CHARS, syntaxError, XlCfgLexer, type Token } from './xlcfg-lexer.js';

export interface XlPos {
  line: number;
  col: number;
}

export interface XlString extends XlPos {
  kind: 'string';
  value: string;
}

export interface XlNumber extends XlPos {
  kind: 'number';
  value: number;
  /** As written (`0x10`, `010`, `16`). */
  raw: string;
}

export interface XlList extends XlPos {
  kind: 'list';
  items: XlValue[];
}

export type XlValue = XlString | XlNumber | XlList;

export interface XlEntry extends XlPos {
  key: string;
  value: XlValue;
  /** File the entry came from (`<command line>` for overrides); the AST's file when absent. */
  file?: string;
}

export interface XlCfgAst {
  file: string;
  /** One entry per key (the last assignment of a key wins), in order of last assignment. */
  entries: XlEntry[];
}

class Parser {
  private readonly lexer: XlCfgLexer;
  private tok: Token;
  /** Lists open around the current token: bounded, so a crafted file cannot exhaust the stack. */
  private depth = 0;

  constructor(
    text: string,
    private readonly file: string,
  ) {
    this.lexer = new XlCfgLexer(text, file);
    this.tok = this.lexer.next();
  }

  /** The kind of the current token (a method, so that narrowing does not survive advance()). */
  private kind(): Token['kind'] {
    return this.tok.kind;
  }

  private advance(): Token {
    const t = this.tok;
    this.tok = this.lexer.next();
    return t;
  }

  private fail(t: Token, expected: string): never {
    let msg = `expected ${expected}, found ${describeToken(t)}`;
    if (t.kind === 'invalid' && PYTHON_CHARS.includes(t.text)) {
      msg += ' (xl.cfg is not Python: expressions are not supported)';
    } else if (t.kind === 'ident' && (t.text === 'True' || t.text === 'False' || t.text === 'None')) {
      msg += ' (xl.cfg is not Python: use 1, 0 or a string)';
    } else if (t.kind === 'ident') {
      msg += ' (strings must be quoted)';
    }
    throw syntaxError(this.file, t.line, t.col, msg);
  }

  parse(): XlCfgAst {
    const byKey = new Map<string, XlEntry>();
    for (;;) {
      while (this.kind() === 'newline' || this.kind() === ';') this.advance();
      if (this.kind() === 'eof') break;
      if (this.kind() !== 'ident') this.fail(this.tok, 'a key name');
      const keyTok = this.advance();
      if (this.kind() !== '=') this.fail(this.tok, `'=' after "${keyTok.text}"`);
      this.advance();
      const value = this.value(`a value for "${keyTok.text}" (a string, number or list)`);
      const end = this.kind();
      if (end !== 'newline' && end !== ';' && end !== 'eof') {
        this.fail(this.tok, `end of line or ';' after the value of "${keyTok.text}"`);
      }
      byKey.delete(keyTok.text); // last wins, and moves to the end
      byKey.set(keyTok.text, {
        key: keyTok.text,
        value,
        line: keyTok.line,
        col: keyTok.col,
        file: this.file,
      });
    }
    return { file: this.file, entries: [...byKey.values()] };
  }

  private value(expected: string): XlValue {
    const t = this.tok;
    switch (t.kind) {
      case 'string':
        this.advance();
        return { kind: 'string', value: t.value as string, line: t.line, col: t.col };
      case 'number':
        this.advance();
        return { kind: 'number', value: t.value as number, raw: t.text, line: t.line, col: t.col };
      case '[':
        return this.list();
      default:
        return this.fail(t, expected);
    }
  }

  private skipNewlines(): void {
    while (this.kind() === 'newline') this.advance();
  }

  private list(): XlList {
    const open = this.advance();
    if (++this.depth > MAX_XLCFG_NESTING) {
      throw syntaxError(this.file, open.line, open.col, `lists nested deeper than ${MAX_XLCFG_NESTING} levels`);
    }
    const items: XlValue[] = [];
    const where = `(the list opened at ${open.line}:${open.col})`;
    this.skipNewlines();
    while (this.kind() !== ']') {
      if (this.kind() === 'eof') this.fail(this.tok, `']' ${where}`);
      items.push(this.value(`a value or ']' ${where}`));
      this.skipNewlines();
      if (this.kind() === ',') {
        this.advance();
        this.skipNewlines();
      } else if (this.kind() !== ']') {
        this.fail(this.tok, `',' or ']' ${where}`);
      }
    }
    this.advance();
    this.depth--;
    return { kind: 'list', items, line: open.line, col: open.col };
  }
}

/** Parses xl.cfg text; throws XenoError('CONFIG_SYNTAX', `${file}:${line}:${col}: ...`). */
export function parseXlCfg(text: string, file = '<string>'): XlCfgAst {
  return new Parser(text, file).parse();
}

/** The entry for `key` (the last assignment), if any. */
export function getEntry(ast: XlCfgAst, key: string): XlEntry | undefined {
  return ast.entries.find((e) => e.key === key);
}

/** Plain JS view of a value (strings, numbers, nested arrays), without positions. */
export function plainValue(v: XlValue): string | number | unknown[] {
  return v.kind === 'list' ? v.items.map(plainValue) : v.value;
}
