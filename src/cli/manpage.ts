/**
 * The man pages, generated (never written by hand): xeno(1) from the CLI's command table and its
 * examples, xenod(8) from xenod's options and the commented example xend-config.sxp, xeno.cfg(5)
 * from the guest config key table. `npm run man` writes docs/man/; a test regenerates and compares.
 */
import type { Command } from 'commander';
import { DOMAIN_KEY_DOCS } from '../config/key-docs.js';
import { XENO_VERSION } from '../common/version.js';
import { EXAMPLES, EXIT_CODES } from './examples.js';

/** Escapes text for roff: backslashes, leading dots and quotes, dashes. */
function esc(s: string): string {
  return s.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/gm, '\\&$1');
}

function head(name: string, section: number, what: string): string[] {
  return [`.TH ${name.toUpperCase()} ${section} "" "xeno ${XENO_VERSION}" "${what}"`];
}

export function manXeno(program: Command): string {
  const lines = head('xeno', 1, 'xeno manual');
  lines.push('.SH NAME', 'xeno, xm \\- manage virtual machines the Xen way, through xenod');
  lines.push('.SH SYNOPSIS', '.B xeno', '[\\fB\\-s\\fR \\fISOCKET\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR]', '.br', '.B xm', '\\fICOMMAND\\fR ...');
  lines.push('.SH DESCRIPTION', esc(program.description() + '.'), '.PP',
    esc('xm is the same program under Xen\'s old name. Any unambiguous prefix of a command works (xeno li). Warnings go to stderr; tables and --json output to stdout.'));
  lines.push('.SH COMMANDS');
  for (const c of program.commands) {
    if (c.name().startsWith('__')) continue;
    const usage = `${c.name()}${c.aliases().length ? ` | ${c.aliases().join(' | ')}` : ''} ${c.usage()}`;
    lines.push('.TP', `.B ${esc(usage.trim())}`, esc(c.description()));
    for (const o of c.options) lines.push('.RS', '.TP', `.B ${esc(o.flags)}`, esc(o.description), '.RE');
    for (const ex of EXAMPLES[c.name()] ?? []) lines.push('.RS', '.nf', esc(ex), '.fi', '.RE');
  }
  lines.push('.SH EXIT STATUS');
  for (const [code, what] of EXIT_CODES) lines.push('.TP', `.B ${code}`, esc(what));
  lines.push('.SH ENVIRONMENT', '.TP', '.B XENO_SOCKET', esc("xenod's socket (default /run/xeno/xenod.sock); -s overrides it."));
  lines.push('.SH FILES', '.TP', '.B /etc/xeno/', esc('guest configs (xeno.cfg(5)), xend-config.sxp, auto/ (guests started at boot)'));
  lines.push('.SH SEE ALSO', 'xenod(8), xeno.cfg(5), xl(1)');
  return lines.join('\n') + '\n';
}

export interface XenodOption {
  flags: string;
  doc: string;
}

/** xenod's command line (a test checks it against `xenod --help`). */
export const XENOD_OPTIONS: XenodOption[] = [
  { flags: '--config FILE', doc: 'the daemon configuration (the unit passes /etc/xeno/xend-config.sxp); without it, the embedded defaults' },
  { flags: '--state-dir DIR', doc: 'overrides xeno-state-dir' },
  { flags: '--socket PATH', doc: 'overrides xend-unix-path (so does $XENO_SOCKET)' },
  { flags: '--accel auto|kvm|tcg', doc: 'overrides xeno-accel' },
  { flags: '--save-on-stop', doc: 'save every guest when xenod stops, restore them when it starts (xeno-save-on-stop)' },
  { flags: '--metrics ADDRESS:PORT', doc: 'serve Prometheus metrics on GET /metrics there (xeno-metrics; a bearer token beyond loopback)' },
  { flags: '--web ADDRESS:PORT', doc: 'serve the web console there (xeno-web; log in with the token xeno web-token prints)' },
  { flags: '--network-stop', doc: 'undo the host network set-up (the physical interface gets its address back) and exit' },
  { flags: '--help', doc: 'usage' },
  { flags: '--version', doc: 'version' },
];

/** Keys of the example xend-config.sxp with the comment block just above each. */
export function sxpKeyDocs(sxp: string): Array<{ form: string; key: string; doc: string }> {
  const out: Array<{ form: string; key: string; doc: string }> = [];
  let comment: string[] = [];
  let header = true;
  let afterForm = false;
  for (const raw of sxp.split('\n')) {
    const line = raw.trim();
    if (line === '') {
      comment = [];
      header = false;
      afterForm = false;
      continue;
    }
    const form = /^#?\s*(\(([a-z0-9-]+)\s.*\))\s*$/.exec(line);
    if (form && !header) {
      // Forms right under one another share the comment above them.
      out.push({ form: form[1]!, key: form[2]!, doc: comment.join(' ') + (line.startsWith('#') ? ' (no default: commented out)' : '') });
      afterForm = true;
      continue;
    }
    if (line.startsWith('#')) {
      if (afterForm) comment = [];
      afterForm = false;
      comment.push(line.replace(/^#\s?/, ''));
    }
  }
  return out;
}

export function manXenod(exampleSxp: string): string {
  const lines = head('xenod', 8, 'xeno manual');
  lines.push('.SH NAME', 'xenod \\- the xeno daemon (the xend of xeno)');
  lines.push('.SH SYNOPSIS', '.B xenod', XENOD_OPTIONS.filter((o) => !['--help', '--version'].includes(o.flags)).map((o) => `[\\fB${esc(o.flags)}\\fR]`).join(' '));
  lines.push('.SH DESCRIPTION',
    esc('xenod runs QEMU guests and serves the xeno API (HTTP+JSON) on a Unix socket. It runs in the foreground and logs to stderr (the journal, under systemd) and to its log file. SIGTERM stops the daemon only: every guest keeps running in its own session, and the next xenod re-adopts it. Under systemd (xenod.service, Type=notify) it reports readiness with systemd-notify once the API listens; xendomains.service runs xeno host-stop when the host shuts down, and the next start restores (or starts) those guests, then autostarts the guests of xeno new with autostart = 1 and those linked in the auto dir, once per boot.'));
  lines.push('.SH OPTIONS');
  for (const o of XENOD_OPTIONS) lines.push('.TP', `.B ${esc(o.flags)}`, esc(o.doc));
  lines.push('.SH CONFIGURATION', esc('/etc/xeno/xend-config.sxp, in xend-config.sxp syntax; every key is optional. Keys and defaults:'));
  for (const k of sxpKeyDocs(exampleSxp)) lines.push('.TP', `.B ${esc(k.form)}`, esc(k.doc));
  lines.push('.SH FILES', '.TP', '.B /var/lib/xeno/', esc('state: xeno.db (domains, definitions, events), console/, host-stop/ (guests saved at the last host stop), managed-save/'), '.TP', '.B /run/xeno/xenod.sock', esc('the API socket (mode 0600)'));
  lines.push('.SH SEE ALSO', 'xeno(1), xeno.cfg(5), systemd.service(5)');
  return lines.join('\n') + '\n';
}

export function manXenoCfg(): string {
  const lines = head('xeno.cfg', 5, 'xeno manual');
  lines.push('.SH NAME', 'xeno.cfg \\- guest configuration files of xeno (xl.cfg / xm syntax)');
  lines.push('.SH SYNTAX', esc('KEY = VALUE lines: "strings" or \'strings\', numbers, [ lists ]; # comments. Python constructs are errors; unknown keys are warnings. `xeno create CFG key=value` overrides a key.'));
  lines.push('.SH KEYS');
  for (const k of DOMAIN_KEY_DOCS) lines.push('.TP', `.B ${esc(`${k.key} = ${k.value}`)}`, esc(`${k.doc} Default: ${k.default}.`));
  lines.push('.SH EXAMPLE', '.nf', ...[
    'name   = "web"', 'type   = "pv"', 'kernel = "/var/lib/xeno-images/vmlinuz"', 'memory = 256', 'vcpus  = 2',
    "disk   = [ 'format=raw, vdev=xvda, access=rw, target=/var/lib/xeno-images/web.ext4' ]", "vif    = [ '' ]", 'autostart = 1',
  ].map(esc), '.fi');
  lines.push('.SH SEE ALSO', 'xeno(1), xenod(8), xl.cfg(5)');
  return lines.join('\n') + '\n';
}
