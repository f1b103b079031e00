import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XenoError } from '../common/errors.js';
import { defaultDaemonConfig } from '../model/daemon-config.js';
import { loadDaemonConfigFile, parseCidr, parseDaemonConfig, parseNetworkScript, toDaemonConfig } from './daemon-config.js';
import { parseSxp } from './sxp.js';

function err(fn: () => unknown, code: string, expected: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof XenoError, `not a XenoError: ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, expected);
    return true;
  });
}

/** Modelled on the xend-config.sxp Xen shipped (comments, quoted values, nested xen-api-server). */
const SAMPLE = `# -*- sh -*-

#
# Xend configuration file.
#

# This example configuration is appropriate for an installation that
# utilizes a bridged network configuration.

#(logfile /var/log/xen/xend.log)
(logfile /var/log/xeno/xenod.log)
(loglevel DEBUG)

# The Xen-API server configuration.
(xen-api-server ((unix)))

#(xend-http-server no)
(xend-unix-server yes)
#(xend-tcp-xmlrpc-server no)
#(xend-unix-xmlrpc-server yes)
(xend-relocation-server yes)
#(xend-relocation-ssl-server no)

(xend-unix-path /var/lib/xend/xend-socket)

# Port xend should use for the relocation interface, if xend-relocation-server
# is set.
(xend-relocation-port 8002)

# Address xend should listen on for relocation-socket connections, if
# xend-relocation-server is set.
# Also, interface name is allowed (e.g. eth0) there to get the
# relocation address to be bound on.
(xend-relocation-address '')

# The hosts allowed to talk to the relocation port.  If this is empty (the
# default), then all connections are allowed (assuming that the connection
# arrives on a port and interface on which we are listening; see
# xend-relocation-port and xend-relocation-address above).  Otherwise, this
# should be a space-separated sequence of regular expressions.
(xend-relocation-hosts-allow '^localhost$ ^localhost\\\\.localdomain$ ^host-[0-9]+\\.example\\.org$')

## To bridge network traffic, like this:
#
# dom0: ----------------- bridge -> real eth0 -> the network
#
(network-script 'network-bridge netdev=eth0 bridge=xenbr0')

# The script used to control virtual interfaces.
(vif-script vif-bridge)

# dom0-min-mem is the lowest permissible memory level (in MB) for dom0.
(dom0-min-mem 196)

# Whether to enable auto-ballooning of dom0 to allow domUs to be created.
(enable-dom0-ballooning yes)

# In SMP system, dom0 will use dom0-cpus # of CPUS
# If dom0-cpus = 0, dom0 will take all cpus available
(dom0-cpus 0)

# Whether to enable core-dumps when domains crash.
#(enable-dump no)

# The tool used for initiating virtual TPM migration
#(external-migration-tool '')

# The interface for VNC servers to listen on. Defaults
# to 127.0.0.1  To restore old 'listen everywhere' behaviour
# set this to 0.0.0.0
#(vnc-listen '127.0.0.1')

# The default password for VNC console on HVM domain.
(vncpasswd '')

(console-limit 2048)

# xeno's own settings
(xeno-state-dir "/srv/xeno state")
(xeno-accel kvm)
(xeno-qemu /usr/local/bin/qemu-system-x86_64)
(xeno-min-guest-mem 32)
(xeno-nat-subnet 10.77.0.0/16)
(xeno-save-on-stop yes)
(xeno-log-size 512k)
(xeno-log-count 3)
(xeno-event-limit 500)
(xeno-restart-limit 3)
(xeno-restart-window 120)
(xeno-agent-shutdown-delay 5)
(xeno-relocation-timeout 20)
`;

describe('parseSxp', () => {
  it('parses atoms, quoted strings and nested lists with positions', () => {
    const nodes = parseSxp("(a b)\n  (c 'd e' \"f\\\"g\" ((h) ()))  # c (x\n", 's.sxp');
    assert.deepEqual(nodes, [
      {
        kind: 'list',
        line: 1,
        col: 1,
        items: [
          { kind: 'atom', value: 'a', line: 1, col: 2 },
          { kind: 'atom', value: 'b', line: 1, col: 4 },
        ],
      },
      {
        kind: 'list',
        line: 2,
        col: 3,
        items: [
          { kind: 'atom', value: 'c', line: 2, col: 4 },
          { kind: 'string', value: 'd e', line: 2, col: 6 },
          { kind: 'string', value: 'f"g', line: 2, col: 12 },
          {
            kind: 'list',
            line: 2,
            col: 19,
            items: [
              { kind: 'list', line: 2, col: 20, items: [{ kind: 'atom', value: 'h', line: 2, col: 21 }] },
              { kind: 'list', line: 2, col: 24, items: [] },
            ],
          },
        ],
      },
    ]);
  });

  it('handles escapes: known ones decoded, unknown ones kept with their backslash', () => {
    const [n] = parseSxp(String.raw`(k 'a\\b\nc\.d\'e')`);
    assert.ok(n && n.kind === 'list');
    assert.deepEqual(n.items[1], { kind: 'string', value: "a\\b\nc\\.d'e", line: 1, col: 4 });
  });

  it('treats # inside an atom as part of it, and empty input as no forms', () => {
    const [n] = parseSxp('(k a#b)');
    assert.ok(n && n.kind === 'list');
    assert.equal(n.items[1]!.kind === 'atom' && n.items[1]!.value, 'a#b');
    assert.deepEqual(parseSxp(''), []);
    assert.deepEqual(parseSxp('# only a comment\n\n'), []);
  });

  it('reports syntax errors with file:line:col', () => {
    err(() => parseSxp('(a b)\n(c d', 'x.sxp'), 'CONFIG_SYNTAX', /^x\.sxp:2:5: expected '\)' to close the list opened at 2:1, found end of file/);
    err(() => parseSxp('(a b))', 'x.sxp'), 'CONFIG_SYNTAX', /^x\.sxp:1:6: unexpected '\)'/);
    err(() => parseSxp("(a\n 'b c)\n", 'x.sxp'), 'CONFIG_SYNTAX', /^x\.sxp:2:2: unterminated string \(missing closing '\)/);
    err(() => parseSxp('(a "b\\', 'x.sxp'), 'CONFIG_SYNTAX', /^x\.sxp:1:4: unterminated string/);
  });
});

describe('toDaemonConfig', () => {
  it('reads the sample xend-config.sxp', () => {
    const w: string[] = [];
    const c = parseDaemonConfig(SAMPLE, 'xend-config.sxp', (m) => w.push(m));
    assert.deepEqual(w, []);
    assert.deepEqual(c, {
      logfile: '/var/log/xeno/xenod.log',
      loglevel: 'debug',
      unixPath: '/var/lib/xend/xend-socket',
      stateDir: '/srv/xeno state',
      relocationServer: true,
      relocationPort: 8002,
      relocationAddress: '',
      relocationHostsAllow: ['^localhost$', '^localhost\\.localdomain$', '^host-[0-9]+\\.example\\.org$'],
      networkScript: 'network-bridge netdev=eth0 bridge=xenbr0',
      vifScript: 'vif-bridge',
      dom0MinMem: 196,
      dom0Cpus: 0,
      consoleLimitKb: 2048,
      accel: 'kvm',
      qemuBinary: '/usr/local/bin/qemu-system-x86_64',
      minGuestMem: 32,
      natSubnet: '10.77.0.0/16',
      saveOnStop: true,
      logSizeBytes: 512 * 1024,
      logCount: 3,
      eventLimit: 500,
      qemuUser: 'xeno-qemu',
      restartLimit: 3,
      restartWindowS: 120,
      agentShutdownDelayS: 5,
      relocationTimeoutS: 20,
    });
    assert.ok(c.relocationHostsAllow.some((re) => new RegExp(re).test('localhost.localdomain')));
    assert.ok(!c.relocationHostsAllow.some((re) => new RegExp(re).test('localhostXlocaldomain')));
  });

  it('gives the defaults for an empty file', () => {
    assert.deepEqual(parseDaemonConfig('# nothing\n'), defaultDaemonConfig());
    assert.deepEqual(toDaemonConfig([]), defaultDaemonConfig());
  });

  it('reads alternatives: booleans, log levels, script paths, sizes', () => {
    const c = parseDaemonConfig(
      [
        '(xend-relocation-server FALSE)',
        '(loglevel WARNING)',
        "(network-script '/etc/xen/scripts/network-nat netdev=eth1 dhcp=yes')",
        '(vif-script /etc/xen/scripts/vif-nat)',
        '(xend-relocation-address 192.168.1.10)',
        '(xend-relocation-hosts-allow "")',
        '(dom0-min-mem 1g)',
        '(xeno-save-on-stop off)',
        '(xeno-accel tcg)',
        '(loglevel CRITICAL)',
      ].join('\n'),
    );
    assert.equal(c.relocationServer, false);
    assert.equal(c.loglevel, 'fatal');
    assert.equal(c.networkScript, 'network-nat netdev=eth1 dhcp=yes');
    assert.equal(c.vifScript, 'vif-nat');
    assert.equal(c.relocationAddress, '192.168.1.10');
    assert.deepEqual(c.relocationHostsAllow, []);
    assert.equal(c.dom0MinMem, 1024);
    assert.equal(c.saveOnStop, false);
    assert.equal(c.accel, 'tcg');
  });

  it('reads the relocation key file (absolute path only; absent by default)', () => {
    assert.equal(defaultDaemonConfig().relocationKeyFile, undefined);
    assert.equal(parseDaemonConfig("(xeno-relocation-key-file '/etc/xeno/relocation.psk')").relocationKeyFile, '/etc/xeno/relocation.psk');
    err(() => parseDaemonConfig('(xeno-relocation-key-file relocation.psk)', 'x.sxp'), 'CONFIG_INVALID', /^x\.sxp:1:27: key "xeno-relocation-key-file" expects an absolute path/);
  });

  it('reads the metrics listener and its token file (off by default; an IP address and a port only)', () => {
    assert.equal(defaultDaemonConfig().metrics, undefined);
    assert.deepEqual(parseDaemonConfig('(xeno-metrics 127.0.0.1:9101)').metrics, { host: '127.0.0.1', port: 9101 });
    assert.deepEqual(parseDaemonConfig("(xeno-metrics '[::1]:9101')").metrics, { host: '::1', port: 9101 });
    assert.equal(parseDaemonConfig('(xeno-metrics-token-file /etc/xeno/metrics.token)').metricsTokenFile, '/etc/xeno/metrics.token');
    err(() => parseDaemonConfig('(xeno-metrics 9101)', 'x.sxp'), 'CONFIG_INVALID', /^x\.sxp:1:15: xeno-metrics "9101" is not ADDRESS:PORT/);
    err(() => parseDaemonConfig('(xeno-metrics localhost:9101)', 'x.sxp'), 'CONFIG_INVALID', /"localhost" is not an IP address/);
    err(() => parseDaemonConfig('(xeno-metrics 0.0.0.0:70000)', 'x.sxp'), 'CONFIG_INVALID', /port must be between 1 and 65535/);
    err(() => parseDaemonConfig('(xeno-metrics-token-file metrics.token)', 'x.sxp'), 'CONFIG_INVALID', /expects an absolute path/);
  });

  it('reads the QEMU user (xeno-qemu by default; never root, a valid user name)', () => {
    assert.equal(defaultDaemonConfig().qemuUser, 'xeno-qemu');
    assert.equal(parseDaemonConfig('(xeno-qemu-user qemu_guests)').qemuUser, 'qemu_guests');
    err(() => parseDaemonConfig('(xeno-qemu-user root)', 'x.sxp'), 'CONFIG_INVALID', /^x\.sxp:1:17: xeno-qemu-user cannot be root/);
    err(() => parseDaemonConfig("(xeno-qemu-user 'a;b')", 'x.sxp'), 'CONFIG_INVALID', /invalid xeno-qemu-user "a;b"/);
  });

  it('reads the web console keys (off by default; an IP address and port; an absolute token file)', () => {
    assert.equal(defaultDaemonConfig().web, undefined);
    const c = parseDaemonConfig("(xeno-web 127.0.0.1:8080)\n(xeno-web-token-file /etc/xeno/web.token)");
    assert.deepEqual(c.web, { host: '127.0.0.1', port: 8080 });
    assert.equal(c.webTokenFile, '/etc/xeno/web.token');
    err(() => parseDaemonConfig('(xeno-web localhost:8080)', 'x.sxp'), 'CONFIG_INVALID', /^x\.sxp:1:11: xeno-web "localhost:8080": "localhost" is not an IP address/);
    err(() => parseDaemonConfig('(xeno-web-token-file web.token)', 'x.sxp'), 'CONFIG_INVALID', /^x\.sxp:1:22: key "xeno-web-token-file" expects an absolute path/);
  });

  it('warns about unknown keys and vif-script arguments', () => {
    const w: string[] = [];
    const c = parseDaemonConfig("(frobnicate yes)\n  (vif-script 'vif-bridge bridge=xenbr1')", 'x.sxp', (m) => w.push(m));
    assert.equal(c.vifScript, 'vif-bridge');
    assert.deepEqual(w, [
      'x.sxp:1:2: warning: ignoring unknown key "frobnicate"',
      'x.sxp:2:15: warning: ignoring vif-script arguments "bridge=xenbr1"',
    ]);
  });

  it('rejects invalid values at the value position', () => {
    const bad = (text: string, re: RegExp): void => err(() => parseDaemonConfig(text, 'x.sxp'), 'CONFIG_INVALID', re);
    bad('(xend-relocation-server maybe)', /^x\.sxp:1:25: key "xend-relocation-server" expects yes or no, found "maybe"/);
    bad('(xend-relocation-port 99999)', /^x\.sxp:1:23: key "xend-relocation-port" must be between 1 and 65535/);
    bad('(xend-relocation-port eight)', /expects a number, found "eight"/);
    bad("(xend-relocation-hosts-allow '^ok$ ^bad(')", /^x\.sxp:1:30: xend-relocation-hosts-allow: invalid regular expression "\^bad\("/);
    bad('(network-script /bin/true)', /^x\.sxp:1:17: unknown network-script "\/bin\/true" \(network-bridge, network-nat, network-route\)/);
    bad("(network-script 'network-bridge eth0')", /network-script argument "eth0" is not key=value/);
    bad('(vif-script vif-openvswitch)', /unknown vif-script "vif-openvswitch"/);
    bad('(loglevel LOUD)', /unknown loglevel "LOUD"/);
    bad('(xend-unix-path relative/sock)', /expects an absolute path/);
    bad('(logfile xend.log)', /expects an absolute path/);
    bad('(xeno-state-dir var/lib)', /expects an absolute path/);
    bad('(xeno-accel hvf)', /unknown xeno-accel "hvf"/);
    bad('(xeno-nat-subnet 10.0.0.1/16)', /^x\.sxp:1:18: subnet "10\.0\.0\.1\/16" has host bits set \(did you mean 10\.0\.0\.0\/16\?\)/);
    bad('(xeno-nat-subnet 10.0.0.0)', /invalid subnet/);
    bad('(xeno-min-guest-mem 0)', /at least 1 MiB/);
    bad('(xeno-relocation-timeout 5)', /key "xeno-relocation-timeout" must be between 6 and 3600/);
    bad('(xeno-agent-shutdown-delay 0)', /key "xeno-agent-shutdown-delay" must be between 1 and 3600/);
    bad('(xeno-restart-window 0)', /key "xeno-restart-window" must be between 1 and 86400/);
    bad('(xeno-restart-limit -1)', /key "xeno-restart-limit" expects a number, found "-1"/);
    bad('(xeno-min-guest-mem 1.5m)', /not a whole number of MiB/);
    bad('(dom0-min-mem lots)', /invalid memory size "lots"/);
    bad('(console-limit -1)', /expects a number/);
    bad('(xeno-log-size lots)', /key "xeno-log-size" expects a size such as 10M/);
    bad('(xeno-log-count -1)', /expects a number/);
    bad('(xeno-event-limit 0)', /must be between 1 and/);
    bad('(xeno-qemu "")', /xeno-qemu is empty/);
    bad('(xend-relocation-address "not an address!")', /invalid xend-relocation-address/);
    bad('(network-script network-bridge netdev=eth0)', /^x\.sxp:1:32: key "network-script" takes one value \(quote values/);
    bad('(loglevel)', /^x\.sxp:1:1: key "loglevel" has no value/);
    bad('(loglevel (DEBUG))', /^x\.sxp:1:11: key "loglevel" expects a single value, not a list/);
    bad('loglevel', /^x\.sxp:1:1: expected a \(key value\) form, found "loglevel"/);
    bad('()', /^x\.sxp:1:1: empty form/);
    bad("('loglevel' DEBUG)", /^x\.sxp:1:2: expected a key name/);
  });

  it('lets the last setting of a key win', () => {
    assert.equal(parseDaemonConfig('(xend-relocation-port 1)\n(xend-relocation-port 2)').relocationPort, 2);
  });
});

describe('parseNetworkScript', () => {
  it('splits mode and arguments', () => {
    assert.deepEqual(parseNetworkScript('network-bridge'), { mode: 'bridge', args: {} });
    assert.deepEqual(parseNetworkScript(' network-bridge  netdev=eth0 bridge=xenbr0 '), {
      mode: 'bridge',
      args: { netdev: 'eth0', bridge: 'xenbr0' },
    });
    assert.deepEqual(parseNetworkScript('/etc/xen/scripts/network-nat netdev=eth1 dhcp=yes'), {
      mode: 'nat',
      args: { netdev: 'eth1', dhcp: 'yes' },
    });
    assert.deepEqual(parseNetworkScript('network-route netdev=eth0'), { mode: 'route', args: { netdev: 'eth0' } });
  });

  it('rejects unknown scripts and malformed arguments', () => {
    err(() => parseNetworkScript(''), 'CONFIG_INVALID', /empty network-script/);
    err(() => parseNetworkScript('network-vlan'), 'CONFIG_INVALID', /unknown network-script "network-vlan"/);
    err(() => parseNetworkScript('network-bridge =x'), 'CONFIG_INVALID', /not key=value/);
  });
});

describe('parseCidr', () => {
  it('accepts network addresses and rejects the rest', () => {
    assert.deepEqual(parseCidr('10.0.0.0/16'), { address: '10.0.0.0', prefix: 16 });
    assert.deepEqual(parseCidr('192.168.100.0/24'), { address: '192.168.100.0', prefix: 24 });
    err(() => parseCidr('10.0.0.0/31'), 'CONFIG_INVALID', /between 8 and 30/);
    err(() => parseCidr('10.0.0.0/4'), 'CONFIG_INVALID', /between 8 and 30/);
    err(() => parseCidr('300.0.0.0/16'), 'CONFIG_INVALID', /invalid subnet/);
    err(() => parseCidr('192.168.1.77/24'), 'CONFIG_INVALID', /did you mean 192\.168\.1\.0\/24/);
  });
});

describe('loadDaemonConfigFile', () => {
  it('reads a file and reports a missing one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'xeno-sxp-'));
    try {
      const file = join(dir, 'xend-config.sxp');
      writeFileSync(file, SAMPLE);
      assert.equal(loadDaemonConfigFile(file).relocationPort, 8002);
      writeFileSync(file, '(loglevel DEBUG\n');
      err(() => loadDaemonConfigFile(file), 'CONFIG_SYNTAX', new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2:1: expected '\\)'`));
      err(() => loadDaemonConfigFile(join(dir, 'nope.sxp')), 'NO_SUCH_FILE', /no such file/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
