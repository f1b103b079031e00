/**
 * The pool's certificates, made with openssl (argv arrays, every value checked first): one pool CA,
 * and per host one certificate for everything that host does in the pool — its etcd member (server
 * and peer), its etcd client identity (the CN is its etcd user), its pool door (mTLS HTTPS) — plus
 * the `root` client certificate the pool commands administer etcd with.
 */
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { XenoError } from '../common/errors.js';

const execFileP = promisify(execFile);

/** Host and pool names: they go into a certificate subject, an etcd user name and key paths. */
export const POOL_NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const DAYS = '3650';
const CURVE = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export interface CertFiles {
  cert: string;
  key: string;
}

export interface PoolCa extends CertFiles {
  dir: string;
}

function checkName(what: string, v: string): string {
  if (!POOL_NAME_RE.test(v)) throw new XenoError('BAD_REQUEST', `invalid ${what} "${v}" ([a-z0-9-], at most 63 characters, starting with a letter or digit)`);
  return v;
}

async function openssl(args: string[]): Promise<void> {
  try {
    await execFileP('openssl', args, { timeout: 60_000 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new XenoError('HOST_ERROR', `openssl ${args[0]} failed: ${(err.stderr || err.message).trim()}`);
  }
}

/** The CA files of a pool directory (made by makePoolCa). */
export function poolCa(dir: string): PoolCa {
  const ca = { dir, cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') };
  if (!existsSync(ca.cert) || !existsSync(ca.key)) throw new XenoError('BAD_REQUEST', `${dir} holds no pool CA (ca.crt and ca.key; xeno pool-create makes them)`);
  return ca;
}

/** A new pool CA in `dir` (refused if one is there: a second CA would split the pool). */
export async function makePoolCa(dir: string, pool: string): Promise<PoolCa> {
  checkName('pool name', pool);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = { dir, cert: path.join(dir, 'ca.crt'), key: path.join(dir, 'ca.key') };
  if (existsSync(ca.key)) throw new XenoError('BAD_REQUEST', `${dir} already holds a pool CA`);
  await openssl([
    'req', '-x509', '-new', ...CURVE, '-keyout', ca.key, '-out', ca.cert, '-days', DAYS,
    '-subj', `/CN=xeno-pool-${pool}-ca`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  chmodSync(ca.key, 0o600);
  return ca;
}

/**
 * A certificate signed by the pool CA: CN `cn` (the etcd user it authenticates as), usable as TLS
 * server and client, valid for `ips` (the addresses its etcd member and pool door answer on).
 */
export async function makeCert(ca: PoolCa, out: string, cn: string, ips: string[] = []): Promise<CertFiles> {
  checkName('certificate name', cn);
  for (const ip of ips) if (isIP(ip) === 0) throw new XenoError('BAD_REQUEST', `"${ip}" is not an IP address`);
  mkdirSync(path.dirname(out), { recursive: true, mode: 0o700 });
  const files = { cert: `${out}.crt`, key: `${out}.key` };
  const san = [...new Set([...ips, '127.0.0.1'])].map((ip) => `IP:${ip}`).concat(`DNS:${cn}`).join(',');
  await openssl([
    'req', '-x509', '-new', ...CURVE, '-keyout', files.key, '-out', files.cert, '-days', DAYS,
    '-subj', `/CN=${cn}`, '-CA', ca.cert, '-CAkey', ca.key,
    '-addext', `subjectAltName=${san}`, '-addext', 'extendedKeyUsage=serverAuth,clientAuth',
    '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment',
  ]);
  chmodSync(files.key, 0o600);
  return files;
}

/** The subject CN of a PEM certificate (the pool name of the host it belongs to). */
export async function certCommonName(certFile: string): Promise<string> {
  const { stdout } = await execFileP('openssl', ['x509', '-in', certFile, '-noout', '-subject', '-nameopt', 'multiline'], { timeout: 30_000 });
  const m = /commonName\s*=\s*(\S+)/.exec(stdout);
  if (!m) throw new XenoError('BAD_REQUEST', `${certFile} has no CN`);
  return m[1]!;
}

/** The PEM files as buffers, for TLS options. */
export function readTls(files: { ca: string; cert: string; key: string }): { ca: Buffer; cert: Buffer; key: Buffer } {
  try {
    return { ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key) };
  } catch (e) {
    throw new XenoError('CONFIG_INVALID', `cannot read the pool's certificates: ${(e as Error).message}`);
  }
}
