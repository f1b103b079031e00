/**
 * Making a pool (docs/pool.md): pool-create and pool-join work on the administrator's pool
 * directory (and, with --etcd, on the pool's etcd as its root user); they need no xenod.
 */
import type { Command } from 'commander';
import { json, out } from '../context.js';

function urls(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(/[\s,]+/).filter(Boolean);
}

export function registerPoolAdminCommands(program: Command): void {
  program
    .command('pool-create')
    .description("make a pool: its CA, etcd root's certificate, the first host's certificate, xend-config lines and etcd member arguments")
    .argument('<pool>', 'the pool name ([a-z0-9-])')
    .requiredOption('--host <name>', "the first host's name in the pool")
    .requiredOption('--address <ip>', 'the address the other hosts reach it at')
    .requiredOption('--dir <dir>', 'the pool directory to make (keep it: it holds the CA key)')
    .option('--api-port <port>', "the pool door's port on every host", '8003')
    .option('--json', 'print the host files as JSON')
    .action(async (pool: string, opts: { host: string; address: string; dir: string; apiPort: string; json?: boolean }) => {
      const { createPool } = await import('../../pool/admin.js');
      const f = await createPool(opts.dir, pool, opts.host, opts.address, Number(opts.apiPort));
      if (opts.json) return json(f);
      out(`Pool ${pool} created in ${opts.dir}; host ${opts.host}'s files are in ${f.dir}:\n  start its etcd member with the arguments in ${f.dir}/etcd.args,\n  then: xeno pool-join ${opts.host} --address ${opts.address} --dir ${opts.dir} --etcd https://${opts.address}:2379\n  and add ${f.dir}/xend-pool.sxp to its xend-config.sxp`);
    });

  program
    .command('pool-join')
    .description("give a host to the pool: its certificate and xend-config lines, and with --etcd its etcd user (the first join turns the pool's etcd auth on)")
    .argument('<host>', "the host's name in the pool")
    .requiredOption('--address <ip>', 'the address the other hosts reach it at')
    .requiredOption('--dir <dir>', 'the pool directory (pool-create made it)')
    .option('--etcd <urls>', "the pool's etcd client URLs (comma separated): register the host's etcd user, and add its etcd member to the running cluster if it is not one")
    .option('--json', 'print the host files as JSON')
    .action(async (host: string, opts: { address: string; dir: string; etcd?: string; json?: boolean }) => {
      const { joinHost } = await import('../../pool/admin.js');
      const f = await joinHost(opts.dir, host, opts.address, urls(opts.etcd));
      if (opts.json) return json(f);
      out(`Host ${host}: files in ${f.dir} (add xend-pool.sxp to its xend-config.sxp)${opts.etcd ? '; its etcd user is registered' : ''}` +
        (f.memberAdded ? `\n  its etcd member was added to the running cluster: start it with the arguments in ${f.dir}/etcd.args (it joins as a newcomer)` : ''));
    });
}
