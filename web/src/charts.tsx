/** Small SVG charts: a sparkline for the list, line graphs with lifecycle markers for a domain. */
import type { JSX } from 'preact';

export function Sparkline({ values, max }: { values: Array<number | null>; max?: number }): JSX.Element {
  const w = 120;
  const h = 24;
  const vs = values.map((v) => v ?? 0);
  const top = Math.max(max ?? 0, ...vs, 1);
  const pts = vs.map((v, i) => `${((i / Math.max(vs.length - 1, 1)) * w).toFixed(1)},${(h - (v / top) * (h - 2) - 1).toFixed(1)}`).join(' ');
  return (
    <svg class="spark" width={w} height={h} viewBox={`0 0 ${w} ${h}`} aria-hidden="true">
      <polyline points={pts} fill="none" stroke="currentColor" stroke-width="1.5" />
    </svg>
  );
}

export interface Series {
  label: string;
  color: string;
  points: Array<[number, number | null]>;
}

export interface Marker {
  t: number;
  label: string;
}

const fmtTime = (t: number) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });

export function Graph(props: { title: string; unit: string; series: Series[]; markers: Marker[]; from: number; to: number }): JSX.Element {
  const w = 560;
  const h = 150;
  const pad = { l: 48, r: 8, t: 8, b: 20 };
  const all = props.series.flatMap((s) => s.points.map((p) => p[1] ?? 0));
  const top = Math.max(...all, 1e-9) * 1.1 || 1;
  const span = Math.max(props.to - props.from, 1);
  const x = (t: number) => pad.l + ((t - props.from) / span) * (w - pad.l - pad.r);
  const y = (v: number) => pad.t + (1 - v / top) * (h - pad.t - pad.b);
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));
  return (
    <figure class="graph">
      <figcaption>
        {props.title} <span class="unit">({props.unit})</span>
        {props.series.map((s) => (
          <span class="legend" style={{ color: s.color }}> ■ {s.label}</span>
        ))}
      </figcaption>
      <svg viewBox={`0 0 ${w} ${h}`} width="100%" role="img" aria-label={props.title}>
        <line x1={pad.l} y1={y(0)} x2={w - pad.r} y2={y(0)} class="axis" />
        <line x1={pad.l} y1={pad.t} x2={pad.l} y2={y(0)} class="axis" />
        <text x={pad.l - 4} y={pad.t + 8} class="tick" text-anchor="end">{fmt(top)}</text>
        <text x={pad.l - 4} y={y(0)} class="tick" text-anchor="end">0</text>
        <text x={pad.l} y={h - 4} class="tick">{fmtTime(props.from)}</text>
        <text x={w - pad.r} y={h - 4} class="tick" text-anchor="end">{fmtTime(props.to)}</text>
        {props.markers
          .filter((m) => m.t >= props.from && m.t <= props.to)
          .map((m) => (
            <g class="marker">
              <line x1={x(m.t)} x2={x(m.t)} y1={pad.t} y2={y(0)} />
              <title>{`${fmtTime(m.t)} ${m.label}`}</title>
              <text x={x(m.t) + 2} y={pad.t + 10} class="tick">{m.label.split(':')[0]}</text>
            </g>
          ))}
        {props.series.map((s) => (
          <polyline
            fill="none"
            stroke={s.color}
            stroke-width="1.5"
            points={s.points.filter((p) => p[1] !== null).map(([t, v]) => `${x(t).toFixed(1)},${y(v!).toFixed(1)}`).join(' ')}
          />
        ))}
      </svg>
    </figure>
  );
}
