/**
 * Test helper: an in-process UPnP IGD (device description + SOAP control endpoints) on 127.0.0.1.
 * Each service's behaviour is configurable; every SOAP call is recorded with its arguments.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeService {
  serviceType: string;
  /** Path of the control URL, e.g. "/ctl/IPConn". */
  path: string;
  status?: string;
  externalIp?: string;
  /** Fault codes returned by successive AddPortMapping calls before one succeeds. */
  addFaults?: number[];
  /** AddAnyPortMapping: the port to grant, or a fault code to return when negative. */
  anyPort?: number;
}

export interface SoapCall {
  path: string;
  action: string;
  args: Record<string, string>;
}

const wrap = (action: string, serviceType: string, inner: string): string =>
  `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>` +
  `<u:${action}Response xmlns:u="${serviceType}">${inner}</u:${action}Response></s:Body></s:Envelope>\r\n`;

const fault = (code: number, text: string): string =>
  `<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>` +
  `<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${text}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\r\n`;

export class FakeIgd {
  readonly calls: SoapCall[] = [];
  /** Set to make the server accept requests and never answer. */
  hang = false;

  private constructor(
    private readonly server: http.Server,
    public services: FakeService[],
  ) {}

  static async start(services: FakeService[]): Promise<FakeIgd> {
    let igd: FakeIgd | null = null;
    const server = http.createServer((req, res) => igd!.handle(req, res));
    igd = new FakeIgd(server, services);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return igd;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }
  get location(): string {
    return `http://127.0.0.1:${this.port}/rootDesc.xml`;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private description(): string {
    const svc = this.services
      .map((s) => `<service><serviceType>${s.serviceType}</serviceType><serviceId>id</serviceId><controlURL>${s.path}</controlURL></service>`)
      .join('');
    return `<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><deviceList><device><deviceList><device><serviceList>${svc}</serviceList></device></deviceList></device></deviceList></device></root>`;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      if (this.hang) return;
      if (req.method === 'GET' && req.url === '/rootDesc.xml') {
        res.writeHead(200, { 'Content-Type': 'text/xml' }).end(this.description());
        return;
      }
      const svc = this.services.find((s) => s.path === req.url);
      const soapAction = String(req.headers['soapaction'] ?? '');
      const m = /^"([^"#]+)#(\w+)"$/.exec(soapAction);
      if (req.method !== 'POST' || !svc || !m || m[1] !== svc.serviceType) {
        res.writeHead(404).end();
        return;
      }
      const action = m[2]!;
      const args: Record<string, string> = {};
      for (const a of body.matchAll(/<(New\w+)>([^<]*)<\/\1>/g)) args[a[1]!] = a[2]!;
      this.calls.push({ path: svc.path, action, args });
      const ok = (inner = ''): void => void res.writeHead(200, { 'Content-Type': 'text/xml; charset="utf-8"' }).end(wrap(action, svc.serviceType, inner));
      const fail = (code: number, text: string): void => void res.writeHead(500, { 'Content-Type': 'text/xml; charset="utf-8"' }).end(fault(code, text));
      switch (action) {
        case 'GetStatusInfo':
          ok(`<NewConnectionStatus>${svc.status ?? 'Connected'}</NewConnectionStatus><NewLastConnectionError>ERROR_NONE</NewLastConnectionError><NewUptime>5</NewUptime>`);
          return;
        case 'GetExternalIPAddress':
          ok(`<NewExternalIPAddress>${svc.externalIp ?? '198.51.100.2'}</NewExternalIPAddress>`);
          return;
        case 'AddPortMapping': {
          const f = svc.addFaults?.shift();
          if (f !== undefined) fail(f, 'Fault');
          else ok();
          return;
        }
        case 'AddAnyPortMapping':
          if (svc.anyPort === undefined) fail(401, 'Invalid Action');
          else if (svc.anyPort < 0) fail(-svc.anyPort, 'Fault');
          else ok(`<NewReservedPort>${svc.anyPort}</NewReservedPort>`);
          return;
        case 'DeletePortMapping':
          ok();
          return;
        default:
          fail(401, 'Invalid Action');
      }
    });
  }
}
