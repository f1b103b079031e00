/** The part of noVNC's RFB (docs/API.md of @novnc/novnc 1.5) the page uses; the package ships no types. */
declare module '@novnc/novnc/lib/rfb.js' {
  interface RfbEvents {
    connect: CustomEvent<Record<string, never>>;
    disconnect: CustomEvent<{ clean: boolean }>;
    credentialsrequired: CustomEvent<{ types: string[] }>;
    securityfailure: CustomEvent<{ status: number; reason?: string }>;
    desktopname: CustomEvent<{ name: string }>;
  }
  export default class RFB extends EventTarget {
    constructor(target: HTMLElement, urlOrChannel: string | WebSocket, options?: { shared?: boolean; credentials?: { username?: string; password?: string; target?: string }; wsProtocols?: string[] });
    scaleViewport: boolean;
    background: string;
    addEventListener<K extends keyof RfbEvents>(type: K, listener: (e: RfbEvents[K]) => void): void;
    disconnect(): void;
    sendCredentials(credentials: { username?: string; password?: string; target?: string }): void;
    sendCtrlAltDel(): void;
  }
}
