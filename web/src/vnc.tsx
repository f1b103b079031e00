/**
 * A guest's VNC display: noVNC (bundled, nothing from a CDN) on a WebSocket to xenod, which relays
 * it to the port QEMU listens on. Shown only for a domain that has a display. A vncpasswd is asked
 * here when QEMU wants it, and goes to QEMU only (VNC authentication).
 */
import RFB from '@novnc/novnc/lib/rfb.js';
import { useEffect, useRef, useState } from 'preact/hooks';
import { csrfToken } from './api';

export function VncDisplay({ name }: { name: string }) {
  const box = useRef<HTMLDivElement>(null);
  const rfb = useRef<RFB>();
  const [status, setStatus] = useState('connecting');
  const [desktop, setDesktop] = useState('');
  useEffect(() => {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/domains/${encodeURIComponent(name)}/vnc/ws?csrf=${csrfToken()}`;
    const r = new RFB(box.current!, url, { shared: true });
    r.scaleViewport = true;
    r.background = '#000';
    rfb.current = r;
    r.addEventListener('connect', () => setStatus('connected'));
    // A refusal (wrong password) is followed by a disconnect: the refusal is what the user needs to see.
    r.addEventListener('disconnect', (e) => setStatus((s) => (s.startsWith('refused') ? s : e.detail.clean ? 'disconnected' : 'disconnected (the display is not reachable)')));
    r.addEventListener('desktopname', (e) => setDesktop(e.detail.name));
    r.addEventListener('securityfailure', (e) => setStatus(`refused: ${e.detail.reason ?? `security failure ${e.detail.status}`}`));
    r.addEventListener('credentialsrequired', () => {
      const password = prompt(`VNC password of ${name}`);
      if (password === null) r.disconnect();
      else r.sendCredentials({ password });
    });
    return () => {
      r.disconnect();
      rfb.current = undefined;
    };
  }, [name]);
  return (
    <div class="card">
      <h2>
        Display <small class="status" data-testid="vnc-status">{status}</small> {desktop && <small>{desktop}</small>}{' '}
        <button disabled={status !== 'connected'} onClick={() => rfb.current?.sendCtrlAltDel()}>Ctrl-Alt-Del</button>
      </h2>
      <div class="vnc" ref={box} />
    </div>
  );
}
