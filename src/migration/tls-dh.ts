/**
 * The Diffie-Hellman group QEMU's TLS-PSK server loads from DIR/dh-params.pem. Without that file
 * QEMU generates a fresh 2048-bit group each time its tls-creds-psk object is created (GnuTLS
 * gnutls_dh_params_generate2): 140-500 ms of CPU on every incoming migration. A well-known group
 * (RFC 3526 group 14, 2048-bit MODP, the same one Node ships as 'modp14') is as safe as a generated
 * one and costs nothing: the group is public by design; only the ephemeral exponents are secret.
 */
import { getDiffieHellman } from 'node:crypto';

export const DH_PARAMS_FILE = 'dh-params.pem';

/** DER length octets. */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** A DER INTEGER of an unsigned big-endian value. */
function derInteger(value: Buffer): Buffer {
  const v = value[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), value]) : value;
  return Buffer.concat([Buffer.from([0x02]), derLength(v.length), v]);
}

let pem: string | undefined;

/** PKCS#3 DHParameter { prime, base } as the PEM GnuTLS imports (gnutls_dh_params_import_pkcs3). */
export function dhParamsPem(): string {
  if (pem) return pem;
  const dh = getDiffieHellman('modp14');
  const body = Buffer.concat([derInteger(dh.getPrime()), derInteger(dh.getGenerator())]);
  const der = Buffer.concat([Buffer.from([0x30]), derLength(body.length), body]);
  const lines = der.toString('base64').match(/.{1,64}/g)!;
  pem = `-----BEGIN DH PARAMETERS-----\n${lines.join('\n')}\n-----END DH PARAMETERS-----\n`;
  return pem;
}
