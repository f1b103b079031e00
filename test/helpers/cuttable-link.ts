/**
 * A host's network link in the HA unit tests, as a cable the test can pull: a TCP forwarder in
 * front of each etcd endpoint and UDP forwarders in front of the peers' witness ports. `cut()`
 * drops every connection and datagram (both ways) until `heal()`: the host's processes live on,
 * they just reach nobody (what cutting a namespace's veth does in the pool lab).
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';

export class CuttableLink {
  private cutNow = false;
  private servers: Server[] = [];
  private sockets = new Set<Socket>();
  private udps: UdpSocket[] = [];

  get isCut(): boolean {
    return this.cutNow;
  }

  /** A local endpoint forwarding TCP to `target` (an http://host:port URL); returns the new URL. */
  async tcp(target: string): Promise<string> {
    const u = new URL(target);
    const srv = createServer((c) => {
      if (this.cutNow) return void c.destroy();
      const up = connect(Number(u.port), u.hostname);
      for (const s of [c, up]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      c.pipe(up);
      up.pipe(c);
      c.on('close', () => up.destroy());
      up.on('close', () => c.destroy());
    });
    this.servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
  }

  /** A local UDP port forwarding datagrams to 127.0.0.1:`port` (dropped while cut). */
  async udp(port: number): Promise<number> {
    const s = createSocket('udp4');
    s.on('message', (m) => {
      if (!this.cutNow) s.send(m, port, '127.0.0.1', () => undefined);
    });
    s.on('error', () => undefined);
    this.udps.push(s);
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    return s.address().port;
  }

  cut(): void {
    this.cutNow = true;
    for (const s of this.sockets) s.destroy();
  }

  heal(): void {
    this.cutNow = false;
  }

  close(): void {
    this.cut();
    for (const s of this.servers) s.close();
    for (const u of this.udps) u.close();
  }
}
