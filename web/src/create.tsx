/** Create a domain from an xl.cfg, pasted or uploaded: the daemon's parser, so errors say file:line:col. */
import { useState } from 'preact/hooks';
import { post } from './api';

export function CreatePage() {
  const [text, setText] = useState('');
  const [file, setFile] = useState('web.cfg');
  const [paused, setPaused] = useState(false);
  const [result, setResult] = useState<{ ok: boolean; text: string }>();
  const [busy, setBusy] = useState(false);
  const upload = async (e: Event) => {
    const f = (e.currentTarget as HTMLInputElement).files?.[0];
    if (!f) return;
    setFile(f.name);
    setText(await f.text());
  };
  const run = async (dryRun: boolean) => {
    setBusy(true);
    setResult(undefined);
    try {
      const r = await post<{ domain?: { name: string }; warnings: string[] }>('/v1/domains', { cfgText: text, cfgFile: file, paused, dryRun });
      const warnings = r.warnings.length ? `\n${r.warnings.join('\n')}` : '';
      if (!dryRun && r.domain) location.hash = `#/domain/${encodeURIComponent(r.domain.name)}`;
      else setResult({ ok: true, text: `the config is valid${warnings}` });
    } catch (e) {
      setResult({ ok: false, text: (e as Error).message });
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card">
      <h2>Create a domain</h2>
      <p>
        <label>Upload an xl.cfg <input type="file" accept=".cfg,text/plain" onChange={upload} /></label>{' '}
        <label>file name <input aria-label="file name" value={file} onInput={(e) => setFile(e.currentTarget.value)} size={16} /></label>
      </p>
      <textarea aria-label="config" rows={16} cols={90} value={text} onInput={(e) => setText(e.currentTarget.value)} placeholder={'name = "vm1"\nkernel = "/path/vmlinuz"\nmemory = 128'} />
      <p>
        <label><input type="checkbox" checked={paused} onChange={(e) => setPaused(e.currentTarget.checked)} /> start paused</label>{' '}
        <button disabled={busy} onClick={() => run(true)}>Check</button> <button disabled={busy} onClick={() => run(false)}>Create</button>
      </p>
      {result && <pre class={result.ok ? 'ok' : 'error'} role={result.ok ? 'status' : 'alert'}>{result.text}</pre>}
    </section>
  );
}
