/** The web console's shell: login, then the host page, a domain's page or the create page (hash routes). */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import '@xterm/xterm/css/xterm.css';
import './style.css';
import { login, logout, resume } from './api';
import { CreatePage } from './create';
import { DomainPage } from './domain';
import { HostPage } from './host';

function useHash(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

function Login({ onDone }: { onDone: () => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState('');
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await login(token);
      onDone();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <form class="login card" onSubmit={submit}>
      <h1>xeno</h1>
      <label>
        Token <small>(xeno web-token prints it)</small>
        <input name="token" type="password" autoComplete="current-password" value={token} onInput={(e) => setToken(e.currentTarget.value)} />
      </label>
      <button type="submit">Log in</button>
      {error && <p class="error" role="alert">{error}</p>}
    </form>
  );
}

function App() {
  const [state, setState] = useState<'loading' | 'out' | 'in'>('loading');
  const hash = useHash();
  useEffect(() => {
    resume().then((ok) => setState(ok ? 'in' : 'out'), () => setState('out'));
  }, []);
  if (state === 'loading') return <p>…</p>;
  if (state === 'out') return <Login onDone={() => setState('in')} />;
  const dom = /^#\/domain\/(.+)$/.exec(hash)?.[1];
  return (
    <>
      <header>
        <a href="#/" class="brand">xeno</a>
        <nav>
          <a href="#/">Host</a>
          <a href="#/create">Create</a>
          <button class="link" onClick={() => logout().then(() => setState('out'))}>Log out</button>
        </nav>
      </header>
      <main>{dom ? <DomainPage name={decodeURIComponent(dom)} key={dom} /> : hash === '#/create' ? <CreatePage /> : <HostPage />}</main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
