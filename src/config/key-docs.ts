/**
 * The guest config keys xeno honours, documented once: xeno.cfg(5) is generated from this table,
 * and a test checks it names exactly the keys the parser knows (KNOWN_KEYS + MANAGED_KEYS).
 */
export interface KeyDoc {
  key: string;
  value: string;
  default: string;
  doc: string;
}

export const DOMAIN_KEY_DOCS: KeyDoc[] = [
  { key: 'name', value: '"NAME"', default: '(mandatory)', doc: '1-64 characters of [A-Za-z0-9_.-]; unique on the host.' },
  { key: 'uuid', value: '"UUID"', default: 'random (kept by a definition)', doc: 'The SMBIOS UUID of the guest.' },
  { key: 'type', value: '"pv" | "pvh" | "hvm"', default: '"pv"', doc: 'pv and pvh boot kernel directly (as Xen PV guests); hvm boots from its disk (or kernel).' },
  { key: 'builder', value: '"linux" | "hvm"', default: 'from type', doc: 'The old xm spelling of type.' },
  { key: 'memory', value: 'MiB', default: '128', doc: 'Memory at boot (the balloon target).' },
  { key: 'maxmem', value: 'MiB', default: 'memory', doc: 'Memory the guest may grow to with mem-set; QEMU gets this much RAM.' },
  { key: 'vcpus', value: 'N', default: '1', doc: 'Virtual CPUs at boot.' },
  { key: 'maxvcpus', value: 'N', default: 'vcpus', doc: 'Virtual CPUs the guest may be given with vcpu-set.' },
  { key: 'cpus', value: '"0-3,^1"', default: 'any', doc: 'Host CPUs the vcpus are pinned to.' },
  { key: 'cpu_weight', value: '1-65535', default: '256', doc: 'Credit scheduler weight (a cgroup CPU weight).' },
  { key: 'cap', value: 'percent', default: '0 (none)', doc: 'CPU cap in percent of one host CPU.' },
  { key: 'kernel', value: '"PATH"', default: 'none', doc: 'Kernel to boot directly; relative paths are relative to the config file\'s directory of use.' },
  { key: 'ramdisk', value: '"PATH"', default: 'none', doc: 'Initial ramdisk.' },
  { key: 'root', value: '"/dev/xvda1"', default: 'none', doc: 'root= on the kernel command line.' },
  { key: 'extra', value: '"ARGS"', default: 'none', doc: 'Appended to the kernel command line.' },
  { key: 'cmdline', value: '"ARGS"', default: 'root + extra', doc: 'The whole kernel command line (overrides root and extra).' },
  { key: 'hostname', value: '"NAME"', default: 'from xeno.hostname= in extra', doc: 'The guest\'s host name (systemd.hostname= for a real distribution).' },
  { key: 'bootloader', value: '"pygrub"', default: 'none', doc: 'Boot the kernel and initrd named by the guest\'s own grub.cfg, extlinux.conf or menu.lst on its first disk, read at every start (any path ending in pygrub; no other bootloader).' },
  { key: 'bootloader_args', value: '[ "--entry=N", "--kernel=PATH", "--ramdisk=PATH", "--args=ARGS" ]', default: 'none', doc: 'pygrub\'s flags: the entry, or the kernel/initrd on the guest\'s disk, and arguments added to its command line.' },
  { key: 'disk', value: "[ 'format=raw, vdev=xvda, access=rw, target=PATH', ... ]", default: '[]', doc: 'Disks in xl-disk-configuration syntax (or xm\'s file:PATH,xvda,w). xeno adds `cache=MODE` per disk (see disk_cache). The format is checked against the file (qemu-img info): a raw spec on a qcow2 file, or the reverse, is refused.' },
  { key: 'disk_cache', value: '"none" | "writeback" | "writethrough" | "directsync" | "unsafe"', default: 'none where the filesystem takes O_DIRECT, else writeback', doc: 'Host cache mode of every disk without its own cache= key. A live migration without --copy-storage refuses disks whose mode is not none or directsync (unless read-only, or forced).' },
  { key: 'vif', value: "[ 'mac=..., bridge=xenbr0, ip=..., script=vif-nat, rate=10Mb/s', ... ]", default: '[]', doc: 'Network interfaces in xl-network-configuration syntax.' },
  { key: 'on_poweroff', value: 'destroy | restart | preserve | rename-restart | coredump-destroy | coredump-restart', default: 'destroy', doc: 'What xenod does when the guest powers off.' },
  { key: 'on_reboot', value: '(as on_poweroff)', default: 'restart', doc: 'What xenod does when the guest reboots.' },
  { key: 'on_crash', value: '(as on_poweroff)', default: 'destroy', doc: 'What xenod does when the guest panics.' },
  { key: 'restart_limit', value: 'N', default: 'xeno-restart-limit (5)', doc: 'Restarts (on_reboot/on_crash = restart) allowed within xeno-restart-window before the guest is left stopped; 0 = no limit. Restarts in that window are delayed 1 s, 2 s, 4 s ... (at most 60 s).' },
  { key: 'ha', value: '0 | 1', default: '0', doc: 'Pool HA: when this guest\'s host fails (its etcd lease expires), the pool leader restarts the guest on another host, once (docs/pool-ha.md).' },
  { key: 'ha_restart_priority', value: '0..1000', default: '0', doc: 'With ha = 1: guests with a higher priority are restarted first after a host failure.' },
  { key: 'boot', value: '"c" | "d" | "n" | "dc" ...', default: '"cd"', doc: 'hvm: the boot order in Xen\'s letters (c disk, d cdrom, n network), as bootindex on each device.' },
  { key: 'vnc', value: '0 | 1', default: '0', doc: 'hvm: a VNC display (a standard VGA).' },
  { key: 'vnclisten', value: '"ADDRESS"', default: '"127.0.0.1"', doc: 'Where the VNC display listens; beyond loopback a vncpasswd is required.' },
  { key: 'vncdisplay', value: 'N', default: 'the first free display', doc: 'The VNC display number (port 5900 + N).' },
  { key: 'vncpasswd', value: '"PASSWORD"', default: 'none', doc: 'The VNC password (at most 8 characters), set over QMP after start, never on QEMU\'s command line.' },
  { key: 'vfb', value: "[ 'vnc=1, vnclisten=..., vncdisplay=N, vncpasswd=...' ]", default: '[]', doc: 'The same VNC keys in xm\'s vfb list; its other keys only warn.' },
  { key: 'sdl', value: '0 | 1', default: '0', doc: 'No effect (a warning when 1): xenod has no screen; use vnc.' },
  { key: 'serial', value: '"pty"', default: '"pty"', doc: 'The serial line is always xenod\'s console (xeno console); any other value warns.' },
  { key: 'autostart', value: '0 | 1', default: '0', doc: 'A defined guest (xeno new) with autostart = 1 starts when xenod starts after a boot. Configs linked in the auto dir (/etc/xeno/auto) start too.' },
  { key: 'autostart_order', value: 'N', default: '0', doc: 'Guests autostart in this order (lower first, then by name).' },
  { key: 'autostart_delay', value: 'seconds', default: '0', doc: 'Seconds to wait after autostarting this guest before the next one.' },
  { key: 'anti_affinity', value: '[ "TAG", ... ]', default: '[]', doc: 'In a pool: two guests sharing a tag are never placed on the same host (xeno start picks another).' },
];
