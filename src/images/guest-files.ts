/**
 * The per-image customisation of a copied root tree: host name, networking (systemd-networkd,
 * DHCP or static), fstab by label, serial gettys on ttyS0 (and hvc0, by systemd's generator), the udev rule that onlines
 * hot-added CPUs, root's ssh key / password, fresh ssh host keys and machine id, and a minimal
 * /boot/grub/grub.cfg, read by pygrub and by the GRUB grub-bios.ts writes on the disk (grub-install
 * and update-grub are not run: the first needs a block device, a loop device here).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { XenoError } from '../common/errors.js';
import { run } from './base-cache.js';

export const ROOT_LABEL = 'xeno-root';

export interface GuestNet {
  /** Static address with its prefix (10.0.0.10/24), absent = DHCP. */
  address?: string;
  gateway?: string;
}

export interface GuestFilesOptions {
  hostname: string;
  net: GuestNet;
  sshKey?: string;
  /** A root password (absent: root has none, login by ssh key or the console's autologin-less getty). */
  password?: string;
}

export const CPU_ONLINE_RULE = 'SUBSYSTEM=="cpu", ACTION=="add", ATTR{online}=="0", ATTR{online}="1"\n';

/**
 * Devices are waited for as long as they take (systemd >= 252 reads DefaultDeviceTimeoutSec), and
 * a service gets 10 minutes to start (not 90 s): under TCG on a loaded host both are exceeded.
 */
export const DEVICE_TIMEOUT_CONF = '[Manager]\nDefaultDeviceTimeoutSec=infinity\nDefaultTimeoutStartSec=10min\n';

function put(root: string, p: string, text: string, mode = 0o644): void {
  const f = path.join(root, p);
  mkdirSync(path.dirname(f), { recursive: true });
  writeFileSync(f, text, { mode });
  chmodSync(f, mode);
}

/** systemctl enable, done by hand (no systemd runs in the tree): a symlink in the target's .wants. */
function enable(root: string, target: string, unit: string, template = unit): void {
  const dir = path.join(root, 'etc/systemd/system', `${target}.wants`);
  mkdirSync(dir, { recursive: true });
  const link = path.join(dir, unit);
  rmSync(link, { force: true });
  symlinkSync(`/lib/systemd/system/${template}`, link);
}

export function networkUnit(net: GuestNet): string {
  const lines = ['[Match]', 'Name=en* eth*', '', '[Network]'];
  if (net.address) {
    lines.push(`Address=${net.address}`);
    if (net.gateway) lines.push(`Gateway=${net.gateway}`, `DNS=${net.gateway}`);
  } else {
    lines.push('DHCP=yes');
  }
  return lines.join('\n') + '\n';
}

/** The kernel and initrd pygrub boots: Debian's /vmlinuz symlinks (kept current by kernel upgrades). */
export function grubCfg(root: string): string {
  const kernels = readdirSync(path.join(root, 'boot')).filter((f) => f.startsWith('vmlinuz-')).sort();
  if (!kernels.length) throw new XenoError('IMAGE_ERROR', 'the root tree has no kernel in /boot (is linux-image-amd64 installed?)');
  const latest = kernels[kernels.length - 1]!.slice('vmlinuz-'.length);
  const k = existsSync(path.join(root, 'vmlinuz')) ? '/vmlinuz' : `/boot/vmlinuz-${latest}`;
  const i = existsSync(path.join(root, 'initrd.img')) ? '/initrd.img' : `/boot/initrd.img-${latest}`;
  return [
    "# Written by xeno create-image, for pygrub and for the GRUB in the disk's boot sectors.",
    'set default=0',
    'set timeout=0',
    "menuentry 'Debian GNU/Linux' {",
    `  linux ${k} root=LABEL=${ROOT_LABEL} ro console=tty0 console=ttyS0`,
    `  initrd ${i}`,
    '}',
    '',
  ].join('\n');
}

export async function customise(root: string, o: GuestFilesOptions): Promise<void> {
  put(root, 'etc/hostname', `${o.hostname}\n`);
  put(root, 'etc/hosts', `127.0.0.1\tlocalhost\n127.0.1.1\t${o.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n`);
  put(root, 'etc/fstab', `LABEL=${ROOT_LABEL}\t/\text4\terrors=remount-ro\t0\t1\n`);
  put(root, 'etc/systemd/network/10-xeno.network', networkUnit(o.net));
  if (o.net.gateway) put(root, 'etc/resolv.conf', `nameserver ${o.net.gateway}\n`);
  enable(root, 'multi-user.target', 'systemd-networkd.service');
  enable(root, 'multi-user.target', 'ssh.service');
  enable(root, 'sockets.target', 'systemd-networkd.socket');
  enable(root, 'network-online.target', 'systemd-networkd-wait-online.service');
  enable(root, 'getty.target', 'serial-getty@ttyS0.service', 'serial-getty@.service');
  // hvc0 (a virtio console) gets its getty from systemd-getty-generator when the device exists:
  // enabled here, a guest without one would wait 90 s for dev-hvc0.device before getty.target.
  put(root, 'etc/udev/rules.d/80-xeno-cpu-online.rules', CPU_ONLINE_RULE);
  // systemd gives up on a device after 90 s, and then on what needs it (ttyS0's getty, the agent's
  // port), and kills a service still starting after 90 s: a loaded host under TCG takes longer.
  put(root, 'etc/systemd/system.conf.d/50-xeno.conf', DEVICE_TIMEOUT_CONF);
  put(root, 'boot/grub/grub.cfg', grubCfg(root));
  // Each image gets its own identity now: a machine id (an empty one would make the first boot a
  // "first boot", whose systemd-firstboot prompts on the console) and fresh ssh host keys.
  put(root, 'etc/machine-id', `${randomBytes(16).toString('hex')}\n`, 0o444);
  rmSync(path.join(root, 'var/lib/dbus/machine-id'), { force: true });
  for (const f of readdirSync(path.join(root, 'etc/ssh'))) if (f.startsWith('ssh_host_')) rmSync(path.join(root, 'etc/ssh', f));
  await run(['ssh-keygen', '-A', '-f', root]);
  if (o.sshKey) {
    mkdirSync(path.join(root, 'root/.ssh'), { recursive: true, mode: 0o700 });
    put(root, 'root/.ssh/authorized_keys', o.sshKey.endsWith('\n') ? o.sshKey : `${o.sshKey}\n`, 0o600);
  }
  if (o.password !== undefined) await setRootPassword(root, o.password);
}

/** root's password in the tree's /etc/shadow, hashed with SHA-512 crypt by the host's openssl. */
async function setRootPassword(root: string, password: string): Promise<void> {
  let hash = '';
  await run(['openssl', 'passwd', '-6', '-stdin'], (l) => (hash = l.trim()), { input: `${password}\n` });
  if (!hash.startsWith('$6$')) throw new XenoError('IMAGE_ERROR', 'openssl passwd -6 gave no SHA-512 hash');
  const file = path.join(root, 'etc/shadow');
  const lines = readFileSync(file, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.startsWith('root:'));
  if (i < 0) throw new XenoError('IMAGE_ERROR', 'the tree has no root entry in /etc/shadow');
  const f = lines[i]!.split(':');
  f[1] = hash;
  lines[i] = f.join(':');
  writeFileSync(file, lines.join('\n'), { mode: 0o640 });
}
