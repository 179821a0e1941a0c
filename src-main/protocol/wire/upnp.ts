/**
 * UPnP IGD control-point text formats: the device description document and SOAP 1.1 actions
 * (UPnP Device Architecture 1.1 §2 and §3; WANIPConnection:1/2 service specs). Pure; no Node APIs.
 *
 * Device description (fetched from the SSDP LOCATION), reduced to what we read:
 *
 *   <root xmlns="urn:schemas-upnp-org:device-1-0">
 *     <URLBase>http://192.168.1.1:5000</URLBase>              (optional, UPnP 1.0 only)
 *     <device> ... <deviceList> <device> ... <serviceList>
 *       <service>
 *         <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
 *         <serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>
 *         <controlURL>/ctl/IPConn</controlURL>                (relative to URLBase or the LOCATION)
 *       </service>
 *
 * SOAP request (HTTP POST to controlURL, header SOAPAction: "<serviceType>#<Action>"):
 *
 *   <?xml version="1.0"?>
 *   <s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
 *               s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
 *     <s:Body><u:Action xmlns:u="<serviceType>"><ArgName>value</ArgName>...</u:Action></s:Body>
 *   </s:Envelope>
 *
 * Success: <u:ActionResponse xmlns:u="..."><OutArg>value</OutArg>...</u:ActionResponse>
 * Failure (HTTP 500): <s:Fault>...<detail><UPnPError><errorCode>725</errorCode>
 *                      <errorDescription>OnlyPermanentLeasesSupported</errorDescription></UPnPError></detail></s:Fault>
 *
 * Extraction is regex-based on purpose (no XML library, no entity expansion beyond the five predefined
 * entities and numeric references): routers' XML is simple and often slightly wrong.
 */

export const UPNP_WANIP2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';
export const UPNP_WANIP1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';
export const UPNP_WANPPP1 = 'urn:schemas-upnp-org:service:WANPPPConnection:1';

/** Service types we can map ports with, best first (dataplane spec §8.5). */
export const UPNP_SERVICE_PREFERENCE: readonly string[] = [UPNP_WANIP2, UPNP_WANIP1, UPNP_WANPPP1];

/** UPnP action error codes we act on. */
export const UpnpError = {
  INVALID_ARGS: 402,
  ACTION_FAILED: 501,
  NOT_AUTHORIZED: 606,
  CONFLICT_IN_MAPPING_ENTRY: 718,
  ONLY_PERMANENT_LEASES_SUPPORTED: 725,
} as const;

export interface UpnpMalformed {
  kind: 'malformed';
  reason: string;
}

export interface UpnpService {
  serviceType: string;
  serviceId: string | null;
  /** Absolute http: URL. */
  controlUrl: string;
}

export interface UpnpDeviceDescription {
  kind: 'description';
  services: UpnpService[];
}

const MAX_XML_CHARS = 256 * 1024;

/** Decodes the five predefined XML entities and numeric character references; leaves others as is. */
export function xmlUnescape(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|lt|gt|amp|quot|apos);/g, (m, e: string) => {
    switch (e) {
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'amp':
        return '&';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
    }
    const cp = e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff) ? String.fromCodePoint(cp) : m;
  });
}

/** Escapes text for an XML element body. */
export function xmlEscape(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c] ?? c);
}

const stripComments = (xml: string): string => xml.replace(/<!--[\s\S]*?-->/g, '');

/** Text of the first `<name>` element (any namespace prefix) in `xml`, unescaped and trimmed; null if absent. */
function firstElementText(xml: string, name: string): string | null {
  const m = new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${name}(?:\\s[^<>]*)?>([^<]*)</(?:[A-Za-z_][\\w.-]*:)?${name}\\s*>`).exec(xml);
  return m ? xmlUnescape(m[1]!).trim() : null;
}

/**
 * Bodies of the non-nested `<name ...>...</name>` elements (any prefix), in document order. Linear time:
 * opening and closing tags are found in one pass each and paired, so hostile input cannot make the regex
 * engine rescan the document once per opening tag.
 */
function elementBodies(xml: string, name: string, limit = Infinity): string[] {
  const opens: { end: number }[] = [];
  const closes: number[] = [];
  for (const m of xml.matchAll(new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${name}(?:\\s[^<>]*)?>`, 'g'))) opens.push({ end: m.index + m[0].length });
  for (const m of xml.matchAll(new RegExp(`</(?:[A-Za-z_][\\w.-]*:)?${name}\\s*>`, 'g'))) closes.push(m.index);
  const out: string[] = [];
  let c = 0;
  let lastClose = -1;
  for (const o of opens) {
    if (out.length >= limit) break;
    if (o.end <= lastClose) continue;
    while (c < closes.length && closes[c]! < o.end) c++;
    if (c >= closes.length) break;
    out.push(xml.slice(o.end, closes[c]));
    lastClose = closes[c]!;
  }
  return out;
}

function resolveHttpUrl(ref: string, base: string): string | null {
  try {
    const u = new URL(ref, base);
    return u.protocol === 'http:' ? u.toString() : null;
  } catch {
    return null;
  }
}

/**
 * Extracts every service (with an http control URL) from a device description. `location` is the URL the
 * document was fetched from; it and URLBase are the bases for relative control URLs. Never throws.
 */
export function parseDeviceDescription(xml: string, location: string): UpnpDeviceDescription | UpnpMalformed {
  if (xml.length > MAX_XML_CHARS) return { kind: 'malformed', reason: 'description too large' };
  const doc = stripComments(xml);
  if (!/<(?:[\w.-]+:)?root[\s>]/.test(doc)) return { kind: 'malformed', reason: 'no <root> element' };
  const urlBaseText = firstElementText(doc, 'URLBase');
  const base = (urlBaseText ? resolveHttpUrl(urlBaseText, location) : null) ?? resolveHttpUrl(location, location);
  if (base === null) return { kind: 'malformed', reason: 'location is not an http URL' };
  const services: UpnpService[] = [];
  for (const body of elementBodies(doc, 'service', 64)) {
    const serviceType = firstElementText(body, 'serviceType');
    const control = firstElementText(body, 'controlURL');
    if (!serviceType || control === null || control === '') continue;
    const controlUrl = resolveHttpUrl(control, base);
    if (controlUrl === null) continue;
    services.push({ serviceType, serviceId: firstElementText(body, 'serviceId'), controlUrl });
  }
  return { kind: 'description', services };
}

/** The port-mapping services among `services`, best type first (stable within a type). */
export function rankServices(services: readonly UpnpService[]): UpnpService[] {
  const rank = (s: UpnpService): number => UPNP_SERVICE_PREFERENCE.indexOf(s.serviceType);
  return services
    .map((s, i) => ({ s, i, r: rank(s) }))
    .filter(({ r }) => r >= 0)
    .sort((a, b) => a.r - b.r || a.i - b.i)
    .map(({ s }) => s);
}

export interface SoapRequest {
  /** Value for the SOAPAction HTTP header, including its double quotes. */
  soapAction: string;
  /** Value for the Content-Type HTTP header. */
  contentType: string;
  body: string;
}

const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** Builds a SOAP 1.1 action request. Argument order is kept (UPnP requires the SCPD order). */
export function buildSoapRequest(serviceType: string, action: string, args: readonly (readonly [string, string | number])[] = []): SoapRequest {
  if (!NAME_RE.test(action)) throw new RangeError(`upnp: bad action name ${action}`);
  if (/["<>&\s]/.test(serviceType)) throw new RangeError(`upnp: bad service type ${serviceType}`);
  const argXml = args
    .map(([name, value]) => {
      if (!NAME_RE.test(name)) throw new RangeError(`upnp: bad argument name ${name}`);
      return `<${name}>${xmlEscape(String(value))}</${name}>`;
    })
    .join('');
  const body =
    '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${serviceType}">${argXml}</u:${action}></s:Body></s:Envelope>\r\n`;
  return { soapAction: `"${serviceType}#${action}"`, contentType: 'text/xml; charset="utf-8"', body };
}

export interface SoapOk {
  kind: 'ok';
  /** Output arguments by name (unescaped, trimmed). No prototype. */
  values: Record<string, string>;
}

export interface SoapFault {
  kind: 'fault';
  /** UPnP errorCode, or null if the fault carried none. */
  errorCode: number | null;
  description: string;
}

/** Parses the SOAP reply to `action`. Never throws. */
export function parseSoapResponse(xml: string, action: string): SoapOk | SoapFault | UpnpMalformed {
  if (xml.length > MAX_XML_CHARS) return { kind: 'malformed', reason: 'response too large' };
  if (!NAME_RE.test(action)) return { kind: 'malformed', reason: 'bad action name' };
  const doc = stripComments(xml);
  if (/<(?:[\w.-]+:)?Fault[\s>]/.test(doc)) {
    const code = firstElementText(doc, 'errorCode');
    const n = code !== null && /^\d{1,4}$/.test(code) ? Number(code) : null;
    const description = firstElementText(doc, 'errorDescription') ?? firstElementText(doc, 'faultstring') ?? '';
    return { kind: 'fault', errorCode: n, description };
  }
  const selfClosing = new RegExp(`<(?:[\\w.-]+:)?${action}Response(?:\\s[^<>]*)?/>`).test(doc);
  const bodies = elementBodies(doc, `${action}Response`, 1);
  if (bodies.length === 0 && !selfClosing) return { kind: 'malformed', reason: `no ${action}Response element` };
  const values: Record<string, string> = Object.create(null) as Record<string, string>;
  const inner = bodies[0] ?? '';
  const re = /<(?:[\w.-]+:)?([A-Za-z_][\w.-]*)(?:\s[^<>]*)?>([^<]*)<\/(?:[\w.-]+:)?\1\s*>/g;
  for (let a = re.exec(inner); a !== null; a = re.exec(inner)) {
    if (!(a[1]! in values)) values[a[1]!] = xmlUnescape(a[2]!).trim();
  }
  for (const e of inner.matchAll(/<(?:[\w.-]+:)?([A-Za-z_][\w.-]*)(?:\s[^<>]*)?\/>/g)) if (!(e[1]! in values)) values[e[1]!] = '';
  return { kind: 'ok', values };
}
