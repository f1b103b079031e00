/**
 * `xeno create-image`: a Debian guest image plus its xl.cfg, in one command. It runs in the CLI
 * process (as root), not in xenod: it is a host-side build (debootstrap, mkfs, qemu-img) that
 * needs no domain state and may take minutes, and xenod's API stays about domains; the daemon need
 * not even be running. Progress: a bar over the steps on a terminal, plain lines otherwise.
 */
import { randomBytes } from 'node:crypto';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { Step } from '../../images/create-image.js';
import { json, out } from '../context.js';

interface Opts {
  hostname: string;
  dist: string;
  size: string;
  memory: string;
  vcpus: string;
  ip?: string;
  gateway?: string;
  dhcp?: boolean;
  sshKey?: string;
  password?: boolean;
  packages?: string;
  bootloader: string;
  format: string;
  dir: string;
  cacheDir?: string;
  json?: boolean;
}

async function progressReporter(STEPS: readonly Step[]): Promise<{ step: (s: Step, detail: string) => void; stop: () => void }> {
  if (!process.stderr.isTTY) {
    let last: Step | undefined;
    return {
      step: (s, detail) => {
        // debootstrap's own lines only at its milestones, to keep a log readable.
        if (s === last && !/^I: (Retrieving Release|Resolving|Installing|Configuring|Base system)/.test(detail)) return;
        last = s;
        process.stderr.write(`create-image: [${STEPS.indexOf(s) + 1}/${STEPS.length}] ${s}: ${detail}\n`);
      },
      stop: () => undefined,
    };
  }
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: 'create-image |{bar}| {value}/{total} {step}: {detail}', hideCursor: true, fps: 5 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(STEPS.length, 0, { step: 'base', detail: '' });
  return {
    step: (s, detail) => bar.update(STEPS.indexOf(s), { step: s, detail: detail.slice(0, 60) }),
    stop: () => {
      bar.update(STEPS.length);
      bar.stop();
    },
  };
}

export function registerImageCommands(program: Command): void {
  program
    .command('create-image')
    .description('build a Debian guest image (debootstrap, no loop devices) and its xl.cfg; run as root')
    .requiredOption('--hostname <name>', "the guest's host name (also the domain and file names)")
    .option('--dist <suite>', 'Debian suite', 'bookworm')
    .option('--size <size>', 'disk size (4G, 512M)', '4G')
    .option('--memory <mib>', 'memory in MiB for the config', '512')
    .option('--vcpus <n>', 'vcpus for the config', '1')
    .option('--ip <addr>', 'static IPv4 address (ADDR or ADDR/PREFIX); DHCP without it')
    .option('--gateway <addr>', 'default gateway and DNS server with --ip')
    .option('--dhcp', 'DHCP (the default)')
    .option('--ssh-key <file>', "a public key for root's authorized_keys")
    .option('--password', 'give root a random password (printed once)')
    .option('--packages <list>', 'extra packages, comma-separated (nginx,curl)')
    .option('--bootloader <how>', 'pygrub (the guest boots its own kernel) or kernel (kernel=/ramdisk= copied beside the image)', 'pygrub')
    .option('--format <fmt>', 'qcow2 or raw', 'qcow2')
    .requiredOption('--dir <dir>', 'where the image and its .cfg go')
    .option('--cache-dir <dir>', 'where debootstrapped bases are cached', '/var/cache/xeno/bases')
    .option('--json', 'print the result as JSON')
    .action(async (o: Opts) => {
      if (o.ip && o.dhcp) throw new Error('create-image: --ip and --dhcp exclude each other');
      if (o.bootloader !== 'pygrub' && o.bootloader !== 'kernel') throw new Error('create-image: --bootloader is pygrub or kernel');
      if (o.format !== 'qcow2' && o.format !== 'raw') throw new Error('create-image: --format is qcow2 or raw');
      const password = o.password ? randomBytes(12).toString('base64url') : undefined;
      // Loaded here: every other command's start need not initialise the image builder.
      const { STEPS, createImage } = await import('../../images/create-image.js');
      const p = await progressReporter(STEPS);
      const t0 = performance.now();
      let r;
      try {
        r = await createImage(
          {
            hostname: o.hostname, dist: o.dist, size: o.size, memory: Number(o.memory), vcpus: Number(o.vcpus), ip: o.ip, gateway: o.gateway,
            sshKeyFile: o.sshKey, password, packages: (o.packages ?? '').split(',').map((x) => x.trim()).filter(Boolean),
            bootloader: o.bootloader, format: o.format, dir: o.dir, cacheDir: o.cacheDir,
          },
          p.step,
        );
      } finally {
        p.stop();
      }
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      if (o.json) return json({ ...r, elapsedMs: Math.round(performance.now() - t0), ...(password ? { password } : {}) });
      out(`image ${r.image} and config ${r.config} made in ${secs} s (${r.baseCached ? 'cached base' : `new base from ${r.mirror}`})`);
      if (password) out(`root password: ${password}`);
      out(`start it with: xeno create ${r.config}`);
    });
}
