/**
 * xend-relocation-hosts-allow: which peers the relocation server talks to. Xen tests each regex
 * with Python's re.match (anchored at the start only), so `127.0.0.1` also admits `127.0.0.10`
 * and `10.0.0.1` admits `10.0.0.12`...; here each pattern must match the WHOLE address or the
 * WHOLE name, as if written ^(?:pattern)$. Names come from reverse DNS and count only when they
 * resolve forward to the peer's own address (else anyone controlling a PTR record could claim
 * any name). Where every pattern is an address pattern no DNS lookup is made at all.
 */
import { lookup, lookupService } from 'node:dns/promises';
import { XenoError } from '../common/errors.js';

/**
 * An "address pattern" is made only of hex digits (0-9, a-f, A-F), `.`, `:` and the regex
 * metacharacters `\ ^ $ * + ? ( ) [ ] { } | -`: it can only ever match an address, so it needs
 * no DNS. Any other character (a letter g-z, `_`...) makes it a name pattern. A name spelled only
 * with the letters a-f (`cafe`) reads as an address pattern: write it qualified (`cafe\.lan`).
 */
export function isAddressPattern(p: string): boolean {
  return /^[0-9a-fA-F.:\\^$*+?()[\]{}|-]+$/.test(p);
}

/** Compiled, anchored patterns; a bad regex is a config error that names it. */
export function compileHostsAllow(patterns: string[]): RegExp[] {
  return patterns.map((p) => {
    try {
      return new RegExp(`^(?:${p})$`);
    } catch (e) {
      throw new XenoError('CONFIG_INVALID', `xend-relocation-hosts-allow: '${p}' is not a valid regular expression: ${(e as Error).message}`);
    }
  });
}

/** True when one pattern matches one candidate (an address or a confirmed name) whole. */
export function hostAllowed(patterns: string[], candidates: string[]): boolean {
  if (patterns.length === 0) return true;
  const res = compileHostsAllow(patterns);
  return res.some((re) => candidates.some((c) => re.test(c)));
}

export interface Resolver {
  reverse(address: string): Promise<string[]>;
  forward(name: string): Promise<string[]>;
}

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T> =>
  Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timeout')), ms).unref())]);

export const systemResolver: Resolver = {
  async reverse(address) {
    const r = await withTimeout(lookupService(address, 0), 2000);
    return r.hostname && r.hostname !== address ? [r.hostname] : [];
  },
  async forward(name) {
    const r = await withTimeout(lookup(name, { all: true }), 2000);
    return r.map((a) => a.address);
  },
};

/** Names of `address` that resolve back to it (forward-confirmed reverse DNS). */
export async function confirmedNames(address: string, resolver: Resolver): Promise<string[]> {
  const names = await resolver.reverse(address).catch(() => [] as string[]);
  const out: string[] = [];
  for (const n of names) {
    const back = await resolver.forward(n).catch(() => [] as string[]);
    if (back.includes(address)) out.push(n);
  }
  return out;
}

/** The whole decision for one peer: its address first, its confirmed names only if needed. */
export async function peerAllowed(patterns: string[], address: string, resolver: Resolver = systemResolver): Promise<boolean> {
  if (patterns.length === 0 || hostAllowed(patterns, [address])) return true;
  const namePatterns = patterns.filter((p) => !isAddressPattern(p));
  if (namePatterns.length === 0) return false;
  return hostAllowed(namePatterns, await confirmedNames(address, resolver));
}
