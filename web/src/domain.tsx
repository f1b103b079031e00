/** A domain's page: its state and actions, config, vifs and disks, graphs over a chosen window, its display (when it has one), console and events. */
import { useEffect, useState } from 'preact/hooks';
import { fmtMiB, get, mib, onEvent, post, postStreamed } from './api';
import { Graph, type Marker, type Series } from './charts';
import { Console } from './console';
import { VncDisplay } from './vnc';
import type { DomainInfo, DomainSample, StatsEvent, StatsResponse } from './types';

interface Detail extends DomainInfo {
  config: { disks: Array<{ target: string; format: string; vdev: string; access: string; devtype: string }> };
  /** What the guest agent reports (absent when the guest runs none). */
  guest?: { addresses: string[]; os?: string; kernel?: string };
}
interface MigrateProgress {
  status: string;
  transferred: number;
  remaining: number;
  total: number;
}
interface Vif {
  devid: number;
  ifname?: string;
  mac?: string;
  mode?: string;
  ips?: string[];
  bridge?: string;
}

const WINDOWS: Array<[string, number, number]> = [
  ['1 min', 60, 1],
  ['5 min', 300, 1],
  ['15 min', 900, 5],
  ['1 h', 3600, 60],
  ['24 h', 86400, 60],
];

export function DomainPage({ name }: { name: string }) {
  const [d, setD] = useState<Detail>();
  const [xlcfg, setXlcfg] = useState('');
  const [vifs, setVifs] = useState<Vif[]>([]);
  const [events, setEvents] = useState<StatsEvent[]>([]);
  const [error, setError] = useState('');
  const [note, setNote] = useState('');
  const load = () => {
    get<Detail>(`/v1/domains/${encodeURIComponent(name)}`).then(setD, (e) => setError(e.message));
    get<{ events: StatsEvent[] }>('/v1/events?limit=1000').then((r) => setEvents(r.events.filter((e) => e.name === name).reverse()), () => undefined);
    get<{ vifs: Vif[] }>(`/v1/domains/${encodeURIComponent(name)}/network`).then((r) => setVifs(r.vifs), () => setVifs([]));
  };
  useEffect(() => {
    load();
    get<{ xlcfg: string }>(`/v1/domains/${encodeURIComponent(name)}/config`).then((r) => setXlcfg(r.xlcfg), () => undefined);
    return onEvent((e) => {
      if (e.name === name || e.name === null) load();
    });
  }, [name]);

  const act = async (op: string, body: unknown = {}, confirmText?: string) => {
    if (confirmText && !confirm(confirmText)) return;
    setError('');
    setNote(`${op}…`);
    try {
      await post(`/v1/domains/${encodeURIComponent(name)}/${op}`, body);
      setNote(`${op}: done`);
      load();
    } catch (e) {
      setNote('');
      setError(`${op}: ${(e as Error).message}`);
    }
  };
  const ask = (q: string, def = '') => prompt(q, def)?.trim() || undefined;
  const [moving, setMoving] = useState('');
  const migrate = async () => {
    const to = ask('Migrate to which host (its relocation server: HOST or HOST:PORT)?');
    if (!to) return;
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(to);
    const target = m && (to.startsWith('[') || !m[1]!.includes(':')) ? { host: m[1]!, port: Number(m[2]) } : { host: to };
    const live = confirm('Live migration (keep it running during the copy)?');
    if (!confirm(`Migrate ${name} to ${to}${live ? ' live' : ''}?`)) return;
    setError('');
    setNote('');
    setMoving(`migrating to ${to}…`);
    try {
      const r = await postStreamed<{ id: number; host: string; elapsedMs: number }, MigrateProgress>(
        `/v1/domains/${encodeURIComponent(name)}/migrate`, { ...target, live },
        (p) => setMoving(`${p.status}: ${fmtMiB(mib(p.transferred))} sent, ${fmtMiB(mib(p.remaining))} left of ${fmtMiB(mib(p.total))}`),
      );
      setMoving('');
      setNote(`migrate: done, now domain ${r.id} on ${r.host} (${(r.elapsedMs / 1000).toFixed(1)} s)`);
    } catch (e) {
      setMoving('');
      setError(`migrate: ${(e as Error).message}`);
    }
  };

  if (!d) return <section>{error ? <p class="error" role="alert">{error}</p> : <p>…</p>}</section>;
  const paused = d.state === 'paused';
  return (
    <section>
      <div class="card">
        <h2>
          {d.name} <small>id {d.id}</small> <span class={`state state-${d.state}`} data-testid="state">{d.state}</span>
        </h2>
        <p class="facts">
          {fmtMiB(d.memory)} (max {fmtMiB(d.maxmem)}) · {d.vcpus}/{d.maxvcpus} vcpus · up {Math.round(d.uptime)} s · {d.accel} · uuid {d.uuid}
        </p>
        <div class="actions">
          {paused ? <button onClick={() => act('unpause')}>Unpause</button> : <button onClick={() => act('pause')}>Pause</button>}
          <button onClick={() => act('shutdown', {}, `Shut ${name} down?`)}>Shutdown</button>
          <button onClick={() => act('reboot', {}, `Reboot ${name}?`)}>Reboot</button>
          <button class="danger" onClick={() => act('destroy', {}, `Destroy ${name} now? It is killed at once.`)}>Destroy</button>
          <button
            onClick={() => {
              const file = ask(`Save ${name} to which file (absolute path on the host)? It stops running.`);
              if (file) void act('save', { file }, `Save ${name} to ${file} and stop it?`);
            }}
          >Save…</button>
          <button onClick={() => { const m = ask('New memory target (MiB, or 256m, 1g)', String(d.memory)); if (m) void act('mem-set', { memory: m }); }}>Mem-set…</button>
          <button onClick={() => { const v = ask(`VCPUs (1-${d.maxvcpus})`, String(d.vcpus)); if (v) void act('vcpu-set', { vcpus: v }); }}>VCPU-set…</button>
          <button onClick={() => void migrate()}>Migrate…</button>
        </div>
        {moving && <p class="progress" role="status" data-testid="migrate-progress">{moving}</p>}
        {note && <p class="ok" role="status">{note}</p>}
        {error && <p class="error" role="alert">{error}</p>}
      </div>
      <Graphs name={name} events={events} />
      <div class="cols">
        <div class="card">
          <h2>Disks</h2>
          <table>
            <thead><tr><th>vdev</th><th>target</th><th>format</th><th>access</th><th>type</th></tr></thead>
            <tbody>{d.config.disks.map((k) => <tr><td>{k.vdev}</td><td>{k.target}</td><td>{k.format}</td><td>{k.access}</td><td>{k.devtype}</td></tr>)}</tbody>
          </table>
          <h2>Network interfaces</h2>
          <table>
            <thead><tr><th>devid</th><th>backend</th><th>MAC</th><th>mode</th><th>IPs</th></tr></thead>
            <tbody>{vifs.map((v) => <tr><td>{v.devid}</td><td>{v.ifname}</td><td>{v.mac}</td><td>{v.mode}{v.bridge ? ` (${v.bridge})` : ''}</td><td>{v.ips?.join(' ')}</td></tr>)}</tbody>
          </table>
          {vifs.length === 0 && <p>none</p>}
          {d.guest && (
            <p class="agent">
              Guest agent: {d.guest.os ?? 'unknown OS'}{d.guest.kernel ? ` (${d.guest.kernel})` : ''}; addresses {d.guest.addresses.join(' ') || 'none'}
            </p>
          )}
        </div>
        <div class="card">
          <h2>Config</h2>
          <pre class="cfg">{xlcfg}</pre>
        </div>
      </div>
      {d.vnc && <VncDisplay name={name} key={d.vnc} />}
      <Console name={name} />
      <div class="card">
        <h2>Events</h2>
        <ul class="events">
          {events.map((e) => <li><time>{new Date(e.ts * 1000).toLocaleString()}</time> <b>{e.kind}</b> {e.message}</li>)}
        </ul>
      </div>
    </section>
  );
}

/** Bytes/s between successive samples of a counter. */
function rate(samples: DomainSample[], value: (s: DomainSample) => number): Array<[number, number | null]> {
  return samples.slice(1).map((s, i) => {
    const p = samples[i]!;
    const dt = s.t - p.t;
    const dv = value(s) - value(p);
    return [s.t, dt > 0 && dv >= 0 ? dv / dt : null];
  });
}

function Graphs({ name, events }: { name: string; events: StatsEvent[] }) {
  const [win, setWin] = useState(0);
  const [stats, setStats] = useState<StatsResponse>();
  const [span, step] = WINDOWS[win] ? [WINDOWS[win]![1], WINDOWS[win]![2]] : [60, 1];
  useEffect(() => {
    const load = () => void get<StatsResponse>(`/v1/stats?dom=${encodeURIComponent(name)}&since=-${span}&step=${step}`).then(setStats, () => undefined);
    load();
    const timer = setInterval(load, 5000);
    return () => clearInterval(timer);
  }, [name, win]);
  const samples = stats?.domains[0]?.samples ?? [];
  const to = Date.now() / 1000;
  const from = to - span;
  const markers: Marker[] = [...(stats?.events ?? []), ...events.filter((e) => e.ts >= from)]
    .filter((e, i, all) => all.findIndex((o) => o.seq === e.seq) === i)
    .map((e) => ({ t: e.ts, label: `${e.kind}: ${e.message}` }));
  const sum = (k: 'rxBytes' | 'txBytes') => (s: DomainSample) => s.nets.reduce((a, n) => a + n[k], 0);
  const dsum = (k: 'rdBytes' | 'wrBytes') => (s: DomainSample) => s.vbds.reduce((a, n) => a + n[k], 0);
  const kib = (pts: Array<[number, number | null]>) => pts.map(([t, v]) => [t, v === null ? null : v / 1024] as [number, number | null]);
  const graphs: Array<{ title: string; unit: string; series: Series[] }> = [
    { title: 'CPU', unit: '% of one host CPU', series: [{ label: 'cpu', color: '#2a7ae2', points: samples.map((s) => [s.t, s.cpuPct]) }] },
    {
      title: 'Memory', unit: 'MiB',
      series: [
        { label: 'target', color: '#888', points: samples.map((s) => [s.t, mib(s.memTarget)]) },
        { label: 'actual', color: '#2a9d55', points: samples.map((s) => [s.t, s.memActual === null ? null : mib(s.memActual)]) },
      ],
    },
    { title: 'Network', unit: 'KiB/s', series: [{ label: 'rx', color: '#2a7ae2', points: kib(rate(samples, sum('rxBytes'))) }, { label: 'tx', color: '#d9822b', points: kib(rate(samples, sum('txBytes'))) }] },
    { title: 'Disk', unit: 'KiB/s', series: [{ label: 'read', color: '#2a7ae2', points: kib(rate(samples, dsum('rdBytes'))) }, { label: 'write', color: '#d9822b', points: kib(rate(samples, dsum('wrBytes'))) }] },
  ];
  return (
    <div class="card">
      <h2>
        Statistics{' '}
        <select aria-label="window" value={win} onChange={(e) => setWin(Number(e.currentTarget.value))}>
          {WINDOWS.map(([label], i) => <option value={i}>{label}</option>)}
        </select>{' '}
        <small>{samples.length} samples{samples.length > 1 ? `, every ${Math.round((samples.at(-1)!.t - samples[0]!.t) / (samples.length - 1))} s` : ''}</small>
      </h2>
      <div class="graphs">{graphs.map((g) => <Graph {...g} markers={markers} from={from} to={to} />)}</div>
    </div>
  );
}
