/**
 * Bash completion's brain: `xeno __complete -- CWORD WORD...` prints the candidates, one a line
 * (commands, options, domain names asked from xenod, defined guests); `__FILES__` tells the bash
 * side to complete config files itself, `__ANYFILE__` any file. See packaging/bash-completion/xeno.
 */
import type { Command, Option } from 'commander';
import { XenoClient, socketPath } from '../client/client.js';
import type { DomainInfo } from '../model/api.js';

/** Commands whose first argument is a config file. */
const CFG_FIRST = new Set(['create', 'new']);
/** Commands whose first argument is a file of another kind. */
const FILE_FIRST = new Set(['restore']);
/** Commands whose first argument is a defined guest. */
const DEFINED_FIRST = new Set(['start', 'delete']);
/** Commands that take no domain at all. */
const NO_DOMAIN = new Set(['info', 'log', 'dmesg', 'host-stop', 'help', 'sched-credit']);

function optionWords(opts: readonly Option[]): string[] {
  return opts.flatMap((o) => [o.long, o.short].filter((x): x is string => !!x));
}

async function names(sock: string, which: 'running' | 'off'): Promise<string[]> {
  const c = new XenoClient(sock);
  try {
    if (which === 'off') return (await c.request<{ off: Array<{ name: string }> }>('GET', '/v1/definitions', undefined, 2000)).off.map((d) => d.name);
    const r = await c.request<{ domains: DomainInfo[] }>('GET', '/v1/domains', undefined, 2000);
    return r.domains.filter((d) => d.id !== 0).map((d) => d.name);
  } catch {
    return []; // no daemon: no names, never an error while typing
  }
}

export async function completions(program: Command, cword: number, words: string[]): Promise<string[]> {
  const cur = words[cword] ?? '';
  let sock = socketPath();
  let i = 1;
  // Global options before the command word.
  while (i < cword && words[i]!.startsWith('-')) {
    if ((words[i] === '-s' || words[i] === '--socket') && words[i + 1]) sock = words[++i]!;
    i++;
  }
  const visible = program.commands.filter((c) => !c.name().startsWith('__'));
  const starts = (xs: string[]) => xs.filter((x) => x.startsWith(cur));
  if (i >= cword) {
    if (cur.startsWith('-')) return starts(['-s', '--socket', '-h', '--help', '-V', '--version']);
    return starts(visible.flatMap((c) => [c.name(), ...c.aliases()]));
  }
  const word = words[i]!;
  const cmd = visible.find((c) => c.name() === word || c.aliases().includes(word)) ?? (() => {
    const m = visible.filter((c) => c.name().startsWith(word));
    return m.length === 1 ? m[0] : undefined;
  })();
  if (!cmd) return [];
  if (cur.startsWith('-')) return starts([...optionWords(cmd.options), '--help']);
  const name = cmd.name();
  if (name === 'help') return starts(visible.map((c) => c.name()));
  // Which positional is being typed (options and their values skipped).
  let pos = 0;
  for (let j = i + 1; j < cword; j++) {
    const w = words[j]!;
    if (w.startsWith('-')) {
      const o = cmd.options.find((x) => x.long === w || x.short === w);
      if (o && (o.required || o.optional)) j++;
      continue;
    }
    pos++;
  }
  const prev = words[cword - 1] ?? '';
  const prevOpt = cmd.options.find((x) => x.long === prev || x.short === prev);
  if (prevOpt && (prevOpt.required || prevOpt.optional)) {
    if (prevOpt.long === '--domain') return starts(await names(sock, 'running'));
    if (prevOpt.long === '--mode') return starts(['save', 'shutdown', 'leave']);
    return [];
  }
  if (pos === 0 && CFG_FIRST.has(name)) return name === 'new' ? ['__FILES__', ...starts(await names(sock, 'running'))] : ['__FILES__'];
  if (pos === 0 && FILE_FIRST.has(name)) return ['__ANYFILE__'];
  if (pos === 1 && name === 'save') return ['__ANYFILE__'];
  if (pos === 0 && DEFINED_FIRST.has(name)) return starts(await names(sock, 'off'));
  if (NO_DOMAIN.has(name)) return [];
  const takesMany = cmd.registeredArguments[0]?.variadic ?? false;
  if (pos === 0 || takesMany) return starts(await names(sock, 'running'));
  return [];
}
