/**
 * The xeno-pool-* keys of xend-config.sxp (docs/pool.md): each value checked as it comes, and the
 * set checked whole at the end (all of the mandatory keys, or none: a host half in a pool would be
 * worse than either). Pure; the caller adds file:line:col to the errors.
 */
import { isIP } from 'node:net';
import { XenoError } from '../common/errors.js';
import { DEFAULT_POOL_API_PORT, DEFAULT_POOL_LEASE_TTL, type PoolConfig } from '../model/daemon-config.js';

const REQUIRED: Array<{ key: string; field: keyof PoolConfig }> = [
  { key: 'xeno-pool-name', field: 'name' },
  { key: 'xeno-pool-host', field: 'host' },
  { key: 'xeno-pool-etcd', field: 'etcd' },
  { key: 'xeno-pool-ca', field: 'ca' },
  { key: 'xeno-pool-cert', field: 'cert' },
  { key: 'xeno-pool-key', field: 'key' },
  { key: 'xeno-pool-address', field: 'address' },
];

function invalid(msg: string): XenoError {
  return new XenoError('CONFIG_INVALID', msg);
}

function absPath(key: string, v: string): string {
  if (!v.startsWith('/')) throw invalid(`key "${key}" expects an absolute path, found "${v}"`);
  return v;
}

function int(key: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw invalid(`key "${key}" expects a number, found "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw invalid(`key "${key}" must be between ${min} and ${max} (got ${n})`);
  return n;
}

export function applyPoolKey(pool: Partial<PoolConfig>, key: string, v: string): void {
  switch (key) {
    case 'xeno-pool-name':
      if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(v)) throw invalid(`invalid xeno-pool-name "${v}" ([a-z0-9-], at most 31 characters)`);
      pool.name = v;
      break;
    case 'xeno-pool-host':
      if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(v)) throw invalid(`invalid xeno-pool-host "${v}" ([a-z0-9-], at most 63 characters)`);
      pool.host = v;
      break;
    case 'xeno-pool-etcd': {
      const urls = v.split(/[\s,]+/).filter(Boolean);
      for (const u of urls) {
        const m = /^https:\/\/([^/:]+|\[[0-9a-f:]+\]):(\d{1,5})$/i.exec(u);
        if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw invalid(`xeno-pool-etcd: "${u}" is not https://ADDRESS:PORT (the pool's etcd is reached over TLS only)`);
      }
      if (!urls.length) throw invalid('xeno-pool-etcd is empty');
      pool.etcd = urls;
      break;
    }
    case 'xeno-pool-ca':
      pool.ca = absPath(key, v);
      break;
    case 'xeno-pool-cert':
      pool.cert = absPath(key, v);
      break;
    case 'xeno-pool-key':
      pool.key = absPath(key, v);
      break;
    case 'xeno-pool-address':
      if (isIP(v) === 0) throw invalid(`xeno-pool-address "${v}" is not an IP address`);
      pool.address = v;
      break;
    case 'xeno-pool-api-port':
      pool.apiPort = int(key, v, 1, 65535);
      break;
    case 'xeno-pool-lease-ttl':
      pool.leaseTtl = int(key, v, 2, 3600);
      break;
  }
}

/** The whole pool config, or an error naming every mandatory key that is missing. */
export function finishPoolConfig(pool: Partial<PoolConfig>): PoolConfig {
  const missing = REQUIRED.filter((k) => pool[k.field] === undefined).map((k) => k.key);
  if (missing.length) throw invalid(`a pooled host needs every one of ${REQUIRED.map((k) => k.key).join(', ')}: missing ${missing.join(', ')}`);
  return { apiPort: DEFAULT_POOL_API_PORT, leaseTtl: DEFAULT_POOL_LEASE_TTL, ...pool } as PoolConfig;
}
