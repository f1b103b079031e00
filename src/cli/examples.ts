/**
 * One worked example per command: shown by `xeno help CMD` and in xeno(1). A test checks that
 * every command of the table has one (and no example names a command that does not exist).
 */
export const EXAMPLES: Record<string, string[]> = {
  create: ['xeno create /etc/xeno/web.cfg            # boot the guest the file describes', 'xeno create web.cfg memory=512 -c       # override a key, then attach to its console', 'xeno create -n web.cfg                   # dry run: the normalised config as JSON'],
  list: ['xeno list                  # running domains, as xm list', 'xeno list --all            # also the defined guests that are off', 'xeno list web --json       # one domain, as JSON'],
  shutdown: ['xeno shutdown -w web       # ACPI power button, wait until it is gone', 'xeno shutdown -a           # every guest'],
  reboot: ['xeno reboot web'],
  destroy: ['xeno destroy web           # pull the plug: QEMU is killed now'],
  pause: ['xeno pause web'],
  unpause: ['xeno unpause web'],
  domid: ['xeno domid web             # prints e.g. 3'],
  domname: ['xeno domname 3             # prints e.g. web'],
  uptime: ['xeno uptime', 'xeno uptime web --json'],
  config: ['xeno config web > web.cfg  # the current config, runtime changes included', 'xeno config web --json'],
  info: ['xeno info | grep accel     # is the host using KVM or TCG?', 'xeno info --json'],
  log: ['xeno log -n 50             # the last 50 lines of the daemon log', 'xeno log -f                # follow it (Ctrl-C stops)'],
  dmesg: ['xeno dmesg -n 20           # the last 20 lifecycle events'],
  'network-list': ['xeno network-list web'],
  'network-attach': ["xeno network-attach web 'ip=10.0.0.14,rate=10Mb/s'"],
  'network-detach': ['xeno network-detach web 1'],
  'network-rules': ['xeno network-rules web --json'],
  console: ['xeno console web           # Ctrl-] detaches', 'xeno console web --history # the kept log first'],
  'mem-set': ['xeno mem-set web 256m      # balloon down to 256 MiB, waits for the guest'],
  'mem-max': ['xeno mem-max web 1g'],
  'vcpu-list': ['xeno vcpu-list web'],
  'block-list': ['xeno block-list web         # vdev, backend, format, cache, size, I/O counters', 'xeno block-list web --json'],
  'block-attach': ["xeno block-attach web 'file:/srv/data.img,xvdb,w'", "xeno block-attach web 'format=qcow2, vdev=xvdc, access=rw, target=/srv/d.qcow2'"],
  'block-detach': ['xeno block-detach web xvdb    # waits until the guest has released it'],
  'cd-insert': ['xeno cd-insert web hdc /srv/iso/debian.iso'],
  'cd-eject': ['xeno cd-eject web hdc'],
  'image-create': ['xeno image-create /srv/data.qcow2 10g', 'xeno image-create /srv/web2.qcow2 --backing /srv/base.img   # thin clone'],
  'image-info': ['xeno image-info /srv/web2.qcow2      # format, sizes, backing chain', 'xeno image-info /srv/web2.qcow2 --json'],
  'vcpu-set': ['xeno vcpu-set web 2        # hot-plug up to maxvcpus'],
  'vcpu-pin': ['xeno vcpu-pin web all 0-1  # every vcpu on host CPUs 0 and 1'],
  'sched-credit': ['xeno sched-credit -d web -w 512 -c 50'],
  'web-token': ['xeno web-token             # the login token of the web console (xenod --web 127.0.0.1:8080)'],
  'pool-create': ['xeno pool-create prod --host h1 --address 10.0.0.1 --dir /root/pool-prod   # the CA and h1\'s files'],
  'pool-join': ['xeno pool-join h2 --address 10.0.0.2 --dir /root/pool-prod --etcd https://10.0.0.1:2379'],
  'pool-eject': ['xeno pool-eject h3 --dir /root/pool-prod   # refused while h3 runs guests'],
  'host-list': ['xeno host-list              # every host: state, free memory, cpus, accel, guests, lease age'],
  'host-evacuate': ['xeno host-evacuate h2       # live-migrate every guest of h2 elsewhere (host-disable h2 first)'],
  'host-disable': ['xeno host-disable h2        # no new guests on h2 (before maintenance)'],
  'host-enable': ['xeno host-enable h2'],
  top: ['xeno top                   # full screen, as xentop: s sorts, q quits', 'xeno top -b -i 2 -d 1       # two samples in xentop\'s batch layout'],
  save: ['xeno save web /var/lib/xeno/web.save      # frees the guest', 'xeno save -c web /srv/web.chk              # checkpoint: keeps running'],
  restore: ['xeno restore /var/lib/xeno/web.save'],
  migrate: ['xeno migrate -l web host2  # live, to host2:8002', 'xeno migrate -l --copy-storage web host2  # no shared storage: host2 gets a copy of the disks'],
  'snapshot-create': ['xeno snapshot-create web before-upgrade --memory  # disks and RAM: a revert resumes it', 'xeno snapshot-create web nightly                  # disks only (crash-consistent)'],
  'snapshot-list': ['xeno snapshot-list web     # the tree; * marks what the present state grew from'],
  'snapshot-revert': ['xeno snapshot-revert web before-upgrade'],
  'snapshot-delete': ['xeno snapshot-delete web nightly  # merges its overlay back while the guest runs'],
  new: ['xeno new /etc/xeno/web.cfg # define it; nothing starts', 'xeno new web --autostart   # keep a guest started with create, and start it at boot'],
  start: ['xeno start web'],
  delete: ['xeno delete web            # forgets the definition; the disks stay'],
  'host-stop': ['xeno host-stop             # what xendomains.service runs at shutdown', 'xeno host-stop -m shutdown -t 120'],
  'create-image': ['xeno create-image --hostname web --dhcp --ssh-key ~/.ssh/id_ed25519.pub --packages nginx --dir /srv/xeno   # then: xeno create /srv/xeno/web.cfg'],
  help: ['xeno help create'],
};

/** The exit codes of xeno, in xeno(1) and `xeno --help`. */
export const EXIT_CODES: Array<[number, string]> = [
  [0, 'success'],
  [1, 'the operation failed (xenod said why on stderr)'],
  [2, 'usage error: unknown command or option, missing argument'],
  [3, 'xenod is not running (its socket cannot be reached)'],
];

export const EXIT_OK = 0;
export const EXIT_ERROR = 1;
export const EXIT_USAGE = 2;
export const EXIT_NO_DAEMON = 3;

export function exampleText(name: string): string {
  const ex = EXAMPLES[name];
  return ex ? `\nExamples:\n${ex.map((l) => `  ${l}`).join('\n')}\n` : '';
}

export function exitCodesText(): string {
  return `\nExit codes:\n${EXIT_CODES.map(([c, d]) => `  ${c}  ${d}`).join('\n')}\n`;
}
