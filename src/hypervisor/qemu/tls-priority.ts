/**
 * The GnuTLS priority of xeno's TLS-PSK objects (the migration stream, a storage copy's NBD).
 * Without one, QEMU's PSK default (NORMAL plus its PSK key exchanges) gave a stream as slow as
 * ChaCha20-Poly1305 in software: TLS 1.3's AES-256 suite needs SHA-384, which QEMU's SHA-256 PSK
 * cannot bind (AES-256-GCM alone fails the handshake), and NORMAL lists ChaCha20 next. Measured
 * with raw QEMUs migrating an idle 512 MiB guest (bench/migrate's TLS row), medians of 7: plain
 * TCP 233 ms, the default 783 ms, AES-128-GCM first 440 ms. So: AEAD ciphers only, AES-128-GCM
 * first where the CPU has AES instructions, ChaCha20-Poly1305 first where it has not (there it is
 * the faster one). QEMU appends its PSK key exchanges (+ECDHE-PSK:+DHE-PSK:+PSK) itself.
 */
import { readFileSync } from 'node:fs';

export function tlsPskPriority(cpuFlags: readonly string[]): string {
  const order = cpuFlags.includes('aes') ? ['AES-128-GCM', 'CHACHA20-POLY1305'] : ['CHACHA20-POLY1305', 'AES-128-GCM'];
  return ['NORMAL', '-CIPHER-ALL', ...[...order, 'AES-256-GCM'].map((c) => `+${c}`)].join(':');
}

let hostFlags: string[] | undefined;

/** This host's CPU flags (the first processor's, from /proc/cpuinfo), read once. */
export function hostCpuFlags(): string[] {
  if (!hostFlags) {
    let text = '';
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      // no /proc: no AES assumed
    }
    hostFlags = /^flags\s*:(.*)$/m.exec(text)?.[1]?.trim().split(/\s+/) ?? [];
  }
  return hostFlags;
}
