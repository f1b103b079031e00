/**
 * The Debian mirror the host's apt uses, so an image is built from the same (possibly local or
 * proxied) mirror: /etc/apt/sources.list one-line entries and deb822 *.sources files.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';

interface Source {
  uri: string;
  suites: string[];
  components: string[];
}

/** One-line format: `deb [opts] URI SUITE COMPONENT...`. */
export function parseSourcesList(text: string): Source[] {
  const out: Source[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
    if (m) out.push({ uri: m[1]!, suites: [m[2]!], components: m[3]!.split(/\s+/).filter(Boolean) });
  }
  return out;
}

/** deb822 format: stanzas of Types/URIs/Suites/Components, separated by blank lines. */
export function parseDeb822(text: string): Source[] {
  const out: Source[] = [];
  for (const stanza of text.split(/\n\s*\n/)) {
    const f: Record<string, string> = {};
    let last = '';
    for (const line of stanza.split('\n')) {
      if (line.startsWith('#')) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (m) f[(last = m[1]!.toLowerCase())] = m[2]!;
      else if (/^\s/.test(line) && last) f[last] += ` ${line.trim()}`;
    }
    if (!(f.types ?? '').split(/\s+/).includes('deb') || (f.enabled ?? 'yes') === 'no') continue;
    const suites = (f.suites ?? '').split(/\s+/).filter(Boolean);
    const components = (f.components ?? '').split(/\s+/).filter(Boolean);
    for (const uri of (f.uris ?? '').split(/\s+/).filter(Boolean)) out.push({ uri, suites, components });
  }
  return out;
}

/** The first source carrying `dist` itself (not dist-security/-updates) with main, else the default. */
export function pickMirror(sources: Source[], dist: string): string {
  const main = sources.filter((s) => s.components.includes('main') && /^(https?|file):/.test(s.uri));
  const exact = main.find((s) => s.suites.includes(dist));
  const plain = main.find((s) => s.suites.some((x) => !x.includes('-') && !x.includes('/')));
  return (exact ?? plain)?.uri.replace(/\/$/, '') ?? DEFAULT_MIRROR;
}

export function hostMirror(dist: string, etc = '/etc/apt'): string {
  const sources: Source[] = [];
  const list = path.join(etc, 'sources.list');
  if (existsSync(list)) sources.push(...parseSourcesList(readFileSync(list, 'utf8')));
  const dir = path.join(etc, 'sources.list.d');
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).sort()) {
      const text = readFileSync(path.join(dir, f), 'utf8');
      if (f.endsWith('.list')) sources.push(...parseSourcesList(text));
      else if (f.endsWith('.sources')) sources.push(...parseDeb822(text));
    }
  }
  return pickMirror(sources, dist);
}
