import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { XenoError } from '../common/errors.js';
import { XlCfgLexer } from './xlcfg-lexer.js';
import { getEntry, parseXlCfg, plainValue, type XlCfgAst } from './xlcfg-parser.js';

function plain(ast: XlCfgAst): Record<string, unknown> {
  return Object.fromEntries(ast.entries.map((e) => [e.key, plainValue(e.value)]));
}

function syntaxErr(text: string, expected: RegExp, file = 'test.cfg'): void {
  assert.throws(
    () => parseXlCfg(text, file),
    (e: unknown) => {
      assert.ok(e instanceof XenoError, `not a XenoError: ${String(e)}`);
      assert.equal(e.code, 'CONFIG_SYNTAX');
      assert.match(e.message, expected);
      return true;
    },
  );
}

describe('xl.cfg lexer', () => {
  it('tokenises every kind of token with positions', () => {
    const lx = new XlCfgLexer('a_1 = [ "x", 0x1f ]; # c\nb=010');
    const toks = [];
    for (let t = lx.next(); t.kind !== 'eof'; t = lx.next()) toks.push([t.kind, t.value ?? t.text, t.line, t.col]);
    assert.deepEqual(toks, [
      ['ident', 'a_1', 1, 1],
      ['=', '=', 1, 5],
      ['[', '[', 1, 7],
      ['string', 'x', 1, 9],
      [',', ',', 1, 12],
      ['number', 31, 1, 14],
      [']', ']', 1, 19],
      [';', ';', 1, 20],
      ['newline', '\n', 1, 25],
      ['ident', 'b', 2, 1],
      ['=', '=', 2, 2],
      ['number', 8, 2, 3],
    ]);
  });

  it('returns invalid tokens for characters outside the syntax', () => {
    const t = new XlCfgLexer('%').next();
    assert.equal(t.kind, 'invalid');
    assert.equal(t.text, '%');
  });
});

describe('parseXlCfg', () => {
  it('parses assignments separated by newlines and semicolons', () => {
    const ast = parseXlCfg('name = "web"; memory = 512\nvcpus=2;;\n\n');
    assert.deepEqual(plain(ast), { name: 'web', memory: 512, vcpus: 2 });
  });

  it('parses single- and double-quoted strings with escapes', () => {
    const ast = parseXlCfg(String.raw`a = 'it\'s' ; b = "say \"hi\"\n\tx\\y" ; c = "it's" ; d = 'a "q"' ; e = "\x41"`);
    assert.deepEqual(plain(ast), { a: "it's", b: 'say "hi"\n\tx\\y', c: "it's", d: 'a "q"', e: 'A' });
  });

  it('parses decimal, hex and octal numbers', () => {
    const ast = parseXlCfg('a = 0\nb = 42\nc = 0x2A\nd = 052\ne = 0XfF');
    assert.deepEqual(plain(ast), { a: 0, b: 42, c: 42, d: 42, e: 255 });
    const c = getEntry(ast, 'c')!;
    assert.equal(c.value.kind === 'number' && c.value.raw, '0x2A');
  });

  it('parses nested multi-line lists with trailing commas and comments', () => {
    const text = [
      'disk = [',
      "  'file:/a.img,xvda,w',   # first",
      '',
      '  "file:/b.img,xvdb,w",',
      ']',
      'x = [ [1, 2], [], ["a", [3,],], ]',
      'empty = []',
    ].join('\n');
    assert.deepEqual(plain(parseXlCfg(text)), {
      disk: ['file:/a.img,xvda,w', 'file:/b.img,xvdb,w'],
      x: [[1, 2], [], ['a', [3]]],
      empty: [],
    });
  });

  it('keeps positions on entries, values and list items', () => {
    const ast = parseXlCfg('# header\n  memory = 512\nvif = [ "", \n   "bridge=br0" ]\n', 'my.cfg');
    const mem = getEntry(ast, 'memory')!;
    assert.equal(mem.line, 2);
    assert.equal(mem.col, 3);
    assert.equal(mem.value.line, 2);
    assert.equal(mem.value.col, 12);
    assert.equal(mem.file, 'my.cfg');
    const vif = getEntry(ast, 'vif')!;
    assert.equal(vif.value.kind, 'list');
    if (vif.value.kind !== 'list') return;
    assert.deepEqual(
      vif.value.items.map((i) => [i.line, i.col]),
      [
        [3, 9],
        [4, 4],
      ],
    );
    assert.equal(ast.file, 'my.cfg');
  });

  it('lets the last assignment of a key win', () => {
    const ast = parseXlCfg('memory = 128\nname = "a"\nmemory = 256\n');
    assert.deepEqual(plain(ast), { name: 'a', memory: 256 });
    assert.equal(getEntry(ast, 'memory')!.line, 3);
    assert.equal(ast.entries.length, 2);
  });

  it('accepts an empty file, comments only, CRLF line ends and a BOM', () => {
    assert.deepEqual(parseXlCfg('').entries, []);
    assert.deepEqual(parseXlCfg('# nothing\n   # here\n').entries, []);
    assert.deepEqual(plain(parseXlCfg('\ufeffa = 1\r\nb = "x"\r\n')), { a: 1, b: 'x' });
  });

  it('accepts identifiers with capitals and underscores, and # inside strings', () => {
    assert.deepEqual(plain(parseXlCfg('_Foo_9 = "a # b"')), { _Foo_9: 'a # b' });
  });
});

describe('parseXlCfg syntax errors', () => {
  it('rejects Python % formatting at the column of the %', () => {
    const text = 'memory = 128\nvmid = 1\nname = "VM%d" % vmid\n';
    syntaxErr(text, /^test\.cfg:3:15: expected end of line or ';' after the value of "name", found '%' \(xl\.cfg is not Python/);
  });

  it('rejects other Python constructs with line and column', () => {
    syntaxErr('memory = 128 + 64', /^test\.cfg:1:14: .*found '\+'/);
    syntaxErr('memory = -1', /^test\.cfg:1:10: expected a value for "memory".*found '-'/);
    syntaxErr('x = 1.5', /^test\.cfg:1:6: .*found '\.'/);
    syntaxErr('a.b = 1', /^test\.cfg:1:2: expected '=' after "a", found '\.'/);
    syntaxErr("kernel = os.path.join('/boot', 'vmlinuz')", /^test\.cfg:1:10: expected a value for "kernel".*found identifier 'os'/);
    syntaxErr('x = (1, 2)', /^test\.cfg:1:5: .*found '\('/);
    syntaxErr('d = { "a": 1 }', /^test\.cfg:1:5: .*found '\{'/);
    syntaxErr('import os', /^test\.cfg:1:8: expected '=' after "import", found identifier 'os'/);
    syntaxErr('acpi = True', /^test\.cfg:1:8: .*found identifier 'True' \(xl\.cfg is not Python: use 1, 0 or a string\)/);
    syntaxErr('x = [1, 2][0]', /^test\.cfg:1:11: expected end of line or ';'.*found '\['/);
    syntaxErr('x = "a" "b"', /^test\.cfg:1:9: .*found string "b"/);
    syntaxErr('x = y', /^test\.cfg:1:5: .*found identifier 'y' \(strings must be quoted\)/);
  });

  it('rejects a missing = and a missing value', () => {
    syntaxErr('\nmemory 128\n', /^test\.cfg:2:8: expected '=' after "memory", found number 128/);
    syntaxErr('memory =\nvcpus = 1', /^test\.cfg:1:9: expected a value for "memory".*found end of line/);
    syntaxErr('memory =', /^test\.cfg:1:9: expected a value for "memory".*found end of file/);
    syntaxErr('= 5', /^test\.cfg:1:1: expected a key name, found '='/);
    syntaxErr('a = 1 b = 2', /^test\.cfg:1:7: .*found identifier 'b'/);
  });

  it('rejects unterminated strings at their opening quote', () => {
    syntaxErr('a = 1\nname = "web\nb = 2', /^test\.cfg:2:8: unterminated string \(missing closing "\)/);
    syntaxErr("name = 'web", /^test\.cfg:1:8: unterminated string \(missing closing '\)/);
    syntaxErr("name = 'web\\", /^test\.cfg:1:8: unterminated string/);
  });

  it('rejects unterminated lists and bad separators', () => {
    syntaxErr('disk = [ "a",\n "b"\n', /^test\.cfg:3:1: expected ',' or '\]' \(the list opened at 1:8\), found end of file/);
    syntaxErr('disk = [', /^test\.cfg:1:9: expected '\]' \(the list opened at 1:8\), found end of file/);
    syntaxErr('disk = [ "a" "b" ]', /^test\.cfg:1:14: expected ',' or '\]'.*found string "b"/);
    syntaxErr('disk = [ , ]', /^test\.cfg:1:10: expected a value or '\]'.*found ','/);
    syntaxErr('disk = [ "a",, ]', /^test\.cfg:1:14: expected a value or '\]'/);
    syntaxErr('disk = ]', /^test\.cfg:1:8: expected a value for "disk"/);
  });

  it('rejects malformed numbers and escapes', () => {
    syntaxErr('memory = 512m', /^test\.cfg:1:10: invalid number '512m'/);
    syntaxErr('a = 08', /^test\.cfg:1:5: invalid number '08'/);
    syntaxErr('a = 0x', /^test\.cfg:1:5: invalid number '0x'/);
    syntaxErr('a = 99999999999999999999', /^test\.cfg:1:5: number .* is too large/);
    syntaxErr('a = "x\\qy"', /^test\.cfg:1:7: invalid escape '\\q'/);
    syntaxErr('a = "\\x4"', /^test\.cfg:1:6: invalid escape/);
  });

  it('uses <string> as the default file name and reports the first error in the file', () => {
    assert.throws(() => parseXlCfg('a = 1\nb 2\nc = 1 % 2'), /^XenoError: <string>:2:3: expected '='/);
  });

  it('bounds list nesting: 32 levels parse, deeper is a syntax error at the list that is too deep', () => {
    const ok = parseXlCfg(`a = ${'['.repeat(32)}1${']'.repeat(32)}`);
    assert.equal(ok.entries.length, 1);
    syntaxErr(`a = ${'['.repeat(33)}${']'.repeat(33)}`, /^test\.cfg:1:37: lists nested deeper than 32 levels$/);
    syntaxErr(`x = 1\na = ${'['.repeat(100_000)}${']'.repeat(100_000)}`, /^test\.cfg:2:37: lists nested deeper than 32 levels$/);
    // Depth is per list, not per file: many shallow lists are fine.
    assert.equal(parseXlCfg(`a = [${'[1],'.repeat(1000)}]`).entries.length, 1);
  });
});
