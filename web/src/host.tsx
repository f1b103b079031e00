/** The host page: the host's CPUs, memory, accelerator and versions; the live domain list (as xeno top sorts it). */
import { useEffect, useState } from 'preact/hooks';
import { fmtMiB, get, onEvent, post } from './api';
import { Sparkline } from './charts';
import type { DomainInfo, HostInfo, StatsResponse } from './types';

export function HostPage() {
  const [host, setHost] = useState<HostInfo>();
  const [domains, setDomains] = useState<DomainInfo[]>([]);
  const [stats, setStats] = useState<StatsResponse>();
  const [error, setError] = useState('');
  const loadList = () => get<{ domains: DomainInfo[] }>('/v1/domains').then((r) => setDomains(r.domains), (e) => setError(e.message));
  useEffect(() => {
    void get<HostInfo>('/v1/host').then(setHost, (e) => setError(e.message));
    void loadList();
    const loadStats = () => void get<StatsResponse>('/v1/stats?since=-60').then(setStats, () => undefined);
    loadStats();
    const timer = setInterval(loadStats, 5000); // graphs every few seconds; states come pushed
    const off = onEvent(() => {
      void loadList();
      void get<HostInfo>('/v1/host').then(setHost, () => undefined);
    });
    return () => {
      clearInterval(timer);
      off();
    };
  }, []);
  const restore = async () => {
    const file = prompt('Restore from which save file (absolute path on the host)?');
    if (!file) return;
    try {
      await post('/v1/restore', { file });
    } catch (e) {
      setError((e as Error).message);
    }
  };
  // xeno top's default order: by name
  const rows = [...domains].sort((a, b) => a.name.localeCompare(b.name));
  const series = (id: number) => stats?.domains.find((d) => d.id === id)?.samples ?? [];
  return (
    <section>
      {error && <p class="error" role="alert">{error}</p>}
      {host && <HostCard host={host} />}
      <div class="card">
        <h2>
          Domains <button onClick={restore}>Restore…</button> <a class="button" href="#/create">Create…</a>
        </h2>
        <table class="domains">
          <thead>
            <tr>
              <th>Name</th><th>ID</th><th>State</th><th>CPU (last minute)</th><th>CPU %</th><th>Memory</th><th>VCPUs</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => {
              const s = series(d.id);
              const last = s.at(-1);
              return (
                <tr data-domain={d.name}>
                  <td>{d.id === 0 ? d.name : <a href={`#/domain/${encodeURIComponent(d.name)}`}>{d.name}</a>}</td>
                  <td>{d.id}</td>
                  <td class={`state state-${d.state}`}>{d.state} <code>{d.stateFlags}</code></td>
                  <td><Sparkline values={s.map((x) => x.cpuPct)} max={100} /></td>
                  <td>{last?.cpuPct?.toFixed(1) ?? '–'}</td>
                  <td>{fmtMiB(d.memory)}</td>
                  <td>{d.vcpus}/{d.maxvcpus}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function HostCard({ host }: { host: HostInfo }) {
  const used = host.total_memory - host.free_memory;
  const pct = host.total_memory ? (used / host.total_memory) * 100 : 0;
  return (
    <div class="card host">
      <h2>Host {host.host}</h2>
      <dl>
        <dt>CPUs</dt><dd>{host.nr_cpus}</dd>
        <dt>Memory</dt>
        <dd>
          <div class="bar" role="meter" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100} aria-label="memory used">
            <div style={{ width: `${pct}%` }} />
          </div>
          {fmtMiB(used)} used, {fmtMiB(host.free_memory)} free of {fmtMiB(host.total_memory)} ({host.dom0_min_mem} MiB kept for Domain-0)
        </dd>
        <dt>Accelerator</dt><dd>{host.accel} <small>{host.accel_reason}</small></dd>
        <dt>Versions</dt><dd>xeno {host.xeno_version}, QEMU {host.qemu_version} ({host.machine_type}), {host.release} {host.machine}</dd>
        <dt>Network</dt><dd>{host.network_mode}</dd>
      </dl>
    </div>
  );
}


