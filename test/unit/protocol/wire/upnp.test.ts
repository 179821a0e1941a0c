import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  UPNP_WANIP1,
  UPNP_WANIP2,
  UPNP_WANPPP1,
  buildSoapRequest,
  parseDeviceDescription,
  parseSoapResponse,
  rankServices,
  xmlEscape,
  xmlUnescape,
} from '../../../../src-main/protocol/wire/upnp.ts';

const service = (type: string, control: string, id = 'urn:upnp-org:serviceId:x'): string =>
  `<service><serviceType>${type}</serviceType><serviceId>${id}</serviceId><controlURL>${control}</controlURL><eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL></service>`;

/** Shaped like miniupnpd's rootDesc.xml (IGD:1 → WANDevice → WANConnectionDevice). */
const ROOT_DESC = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0" configId="1337">
  <specVersion><major>1</major><minor>1</minor></specVersion>
  <device>
    <deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
    <serviceList>${service('urn:schemas-upnp-org:service:Layer3Forwarding:1', '/ctl/L3F')}</serviceList>
    <deviceList><device>
      <deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
      <serviceList>${service('urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1', '/ctl/CmnIfCfg')}</serviceList>
      <deviceList><device>
        <deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
        <serviceList>
          <!-- <service><serviceType>${UPNP_WANIP2}</serviceType><controlURL>/commented-out</controlURL></service> -->
          ${service(UPNP_WANIP1, '/ctl/IPConn', 'urn:upnp-org:serviceId:WANIPConn1')}
        </serviceList>
      </device></deviceList>
    </device></deviceList>
    <presentationURL>http://192.168.1.1/</presentationURL>
  </device>
</root>`;

describe('parseDeviceDescription', () => {
  it('extracts services with absolute control URLs, ignoring comments', () => {
    const d = parseDeviceDescription(ROOT_DESC, 'http://192.168.1.1:5000/rootDesc.xml');
    expect(d.kind).toBe('description');
    if (d.kind !== 'description') return;
    expect(d.services.map((s) => s.controlUrl)).toEqual([
      'http://192.168.1.1:5000/ctl/L3F',
      'http://192.168.1.1:5000/ctl/CmnIfCfg',
      'http://192.168.1.1:5000/ctl/IPConn',
    ]);
    expect(rankServices(d.services)).toEqual([
      { serviceType: UPNP_WANIP1, serviceId: 'urn:upnp-org:serviceId:WANIPConn1', controlUrl: 'http://192.168.1.1:5000/ctl/IPConn' },
    ]);
  });

  it('honours URLBase, prefixes and entities', () => {
    const xml = `<d:root xmlns:d="urn:schemas-upnp-org:device-1-0"><d:URLBase>http://10.0.0.1:49000/</d:URLBase>
      <d:service><d:serviceType>${UPNP_WANPPP1}</d:serviceType><d:controlURL>upnp/control?a=1&amp;b=2</d:controlURL></d:service></d:root>`;
    const d = parseDeviceDescription(xml, 'http://10.0.0.1:1900/desc.xml');
    expect(d.kind === 'description' && d.services[0]?.controlUrl).toBe('http://10.0.0.1:49000/upnp/control?a=1&b=2');
  });

  it('drops services with non-http or missing control URLs', () => {
    const xml = `<root>${service(UPNP_WANIP1, 'https://x/ctl')}${service(UPNP_WANIP1, '')}<service><serviceType>${UPNP_WANIP1}</serviceType></service></root>`;
    const d = parseDeviceDescription(xml, 'http://10.0.0.1/');
    expect(d.kind === 'description' && d.services).toEqual([]);
  });

  it.each([
    ['no root', '<html></html>', 'http://10.0.0.1/'],
    ['non-http location', ROOT_DESC, 'ftp://10.0.0.1/'],
    ['unparseable location', ROOT_DESC, 'not a url'],
  ])('rejects %s', (_n, xml, loc) => {
    expect(parseDeviceDescription(xml, loc).kind).toBe('malformed');
  });

  it('ranks WANIPConnection:2 > :1 > WANPPPConnection:1, dropping others, stable within a type', () => {
    const s = (serviceType: string, n: number) => ({ serviceType, serviceId: null, controlUrl: `http://h/${n}` });
    expect(rankServices([s(UPNP_WANPPP1, 1), s('urn:x:service:Other:1', 2), s(UPNP_WANIP1, 3), s(UPNP_WANIP2, 4), s(UPNP_WANIP1, 5)]).map((x) => x.controlUrl)).toEqual([
      'http://h/4',
      'http://h/3',
      'http://h/5',
      'http://h/1',
    ]);
  });

  it('stays fast on hostile input (many unclosed tags)', () => {
    const evil = '<root>' + '<service '.repeat(20000) + '<service>'.repeat(5000);
    const t0 = performance.now();
    expect(parseDeviceDescription(evil, 'http://10.0.0.1/').kind).toBe('description');
    expect(performance.now() - t0).toBeLessThan(1000);
  });
});

describe('SOAP', () => {
  it('builds an AddPortMapping request', () => {
    const r = buildSoapRequest(UPNP_WANIP1, 'AddPortMapping', [
      ['NewRemoteHost', ''],
      ['NewExternalPort', 41641],
      ['NewProtocol', 'UDP'],
      ['NewPortMappingDescription', 'a<b&c'],
    ]);
    expect(r.soapAction).toBe('"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"');
    expect(r.contentType).toBe('text/xml; charset="utf-8"');
    expect(r.body).toBe(
      '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
        '<s:Body><u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">' +
        '<NewRemoteHost></NewRemoteHost><NewExternalPort>41641</NewExternalPort><NewProtocol>UDP</NewProtocol>' +
        '<NewPortMappingDescription>a&lt;b&amp;c</NewPortMappingDescription>' +
        '</u:AddPortMapping></s:Body></s:Envelope>\r\n',
    );
  });

  it('refuses names that would break the XML', () => {
    expect(() => buildSoapRequest(UPNP_WANIP1, 'Add Port')).toThrow(RangeError);
    expect(() => buildSoapRequest('urn:"x', 'A')).toThrow(RangeError);
    expect(() => buildSoapRequest(UPNP_WANIP1, 'A', [['<x>', 1]])).toThrow(RangeError);
  });

  it('parses output arguments', () => {
    const xml = `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>
      <u:GetExternalIPAddressResponse xmlns:u="${UPNP_WANIP1}"><NewExternalIPAddress> 198.51.100.2 </NewExternalIPAddress></u:GetExternalIPAddressResponse>
      </s:Body></s:Envelope>`;
    const r = parseSoapResponse(xml, 'GetExternalIPAddress');
    expect(r.kind === 'ok' && r.values['NewExternalIPAddress']).toBe('198.51.100.2');
  });

  it('parses an empty (self-closing) response and empty arguments', () => {
    expect(parseSoapResponse(`<s:Envelope><s:Body><u:AddPortMappingResponse xmlns:u="${UPNP_WANIP1}"/></s:Body></s:Envelope>`, 'AddPortMapping')).toMatchObject({
      kind: 'ok',
    });
    const r = parseSoapResponse('<Envelope><Body><m:GetStatusInfoResponse><NewConnectionStatus>Connected</NewConnectionStatus><NewLastConnectionError/></m:GetStatusInfoResponse></Body></Envelope>', 'GetStatusInfo');
    expect(r.kind === 'ok' && { ...r.values }).toEqual({ NewConnectionStatus: 'Connected', NewLastConnectionError: '' });
  });

  it('parses a UPnP fault', () => {
    const xml = `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>
      <detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>725</errorCode><errorDescription>OnlyPermanentLeasesSupported</errorDescription></UPnPError></detail>
      </s:Fault></s:Body></s:Envelope>`;
    expect(parseSoapResponse(xml, 'AddPortMapping')).toEqual({ kind: 'fault', errorCode: 725, description: 'OnlyPermanentLeasesSupported' });
  });

  it('rejects a response to a different action', () => {
    expect(parseSoapResponse('<u:DeletePortMappingResponse/>', 'AddPortMapping').kind).toBe('malformed');
  });

  it('escapes and unescapes', () => {
    expect(xmlEscape(`<a href="x">&'`)).toBe('&lt;a href=&quot;x&quot;&gt;&amp;&apos;');
    expect(xmlUnescape('&#65;&#x42;&lt;&unknown;&#xD800;')).toBe('AB<&unknown;&#xD800;');
  });

  it('never throws on random text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.constantFrom('AddPortMapping', 'GetStatusInfo'), (s, action) => {
        expect(['ok', 'fault', 'malformed']).toContain(parseSoapResponse(s, action).kind);
        expect(['description', 'malformed']).toContain(parseDeviceDescription(s, 'http://10.0.0.1/').kind);
        expect(['description', 'malformed']).toContain(parseDeviceDescription('<root>' + s, 'http://10.0.0.1/').kind);
      }),
      { numRuns: 1000 },
    );
  });

  it('round-trips argument values through escape and parse', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }).filter((v) => v.trim() === v), (v) => {
        const req = buildSoapRequest(UPNP_WANIP1, 'X', [['Arg', v]]);
        const resp = req.body.replace('<u:X ', '<u:XResponse ').replace('</u:X>', '</u:XResponse>');
        const r = parseSoapResponse(resp, 'X');
        expect(r.kind === 'ok' && r.values['Arg']).toBe(v);
      }),
    );
  });
});
