/**
 * The guest's serial console: xterm.js on a WebSocket to the daemon's console hub (the same one
 * `xeno console` uses). The daemon sends the kept log first, so the boot is there.
 */
import { Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'preact/hooks';
import { csrfToken } from './api';

export function Console({ name }: { name: string }) {
  const box = useRef<HTMLDivElement>(null);
  const ws = useRef<WebSocket>();
  const [status, setStatus] = useState('connecting');
  const [text, setText] = useState('');
  useEffect(() => {
    const term = new Terminal({ screenReaderMode: true, convertEol: false, scrollback: 5000, rows: 24, cols: 100, fontSize: 13 });
    term.open(box.current!);
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/domains/${encodeURIComponent(name)}/console/ws?csrf=${csrfToken()}`;
    const sock = new WebSocket(url);
    sock.binaryType = 'arraybuffer';
    ws.current = sock;
    const enc = new TextEncoder();
    sock.onopen = () => setStatus('connected');
    sock.onclose = (e) => setStatus(`closed${e.reason ? `: ${e.reason}` : ''}`);
    sock.onmessage = (m) => term.write(typeof m.data === 'string' ? m.data : new Uint8Array(m.data as ArrayBuffer));
    const sub = term.onData((d) => sock.readyState === WebSocket.OPEN && sock.send(enc.encode(d)));
    return () => {
      sub.dispose();
      sock.close();
      term.dispose();
    };
  }, [name]);
  const send = (e: Event) => {
    e.preventDefault();
    if (ws.current?.readyState !== WebSocket.OPEN) return;
    ws.current.send(new TextEncoder().encode(`${text}\r`));
    setText('');
  };
  return (
    <div class="card">
      <h2>Console <small class="status">{status}</small></h2>
      <div class="term" ref={box} />
      <form class="send" onSubmit={send}>
        <input aria-label="send text" placeholder="send a line to the console" value={text} onInput={(e) => setText(e.currentTarget.value)} />
        <button type="submit">Send</button>
      </form>
    </div>
  );
}
