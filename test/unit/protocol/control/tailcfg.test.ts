import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DiscoKey,
  MachineKey,
  NodeId,
  NodeKey,
  ZERO_DISCO_KEY,
  ZERO_MACHINE_KEY,
  ZERO_NODE_KEY,
  isZeroKey,
  keyHex,
  nodeIdNumber,
  parseDiscoKey,
  parseMachineKey,
  parseNodeId,
  parseNodeKey,
} from '../../../../src-shared/model/ids.ts';
import {
  DerpMapWire,
  MapRequest,
  MapResponse,
  Node,
  PeerChange,
  RegisterRequest,
  RegisterResponse,
  RegisterResponseBody,
  ZERO_TIME,
  formatGoTime,
  isZeroTime,
  parseGoTime,
  type MapResponse as MapResponseT,
} from '../../../../src-main/protocol/control/tailcfg.ts';
import { fixture, fixtureObject } from '../../engine/control/control-fixtures.ts';

const HEX = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';

function mapResponse(name: string): MapResponseT {
  const r = MapResponse.safeParse(fixture(name));
  if (!r.success) throw new Error(`${name}: ${r.error.message}`);
  return r.data;
}

describe('key text (ids.ts)', () => {
  it.each([
    ['nodekey', parseNodeKey, `nodekey:${HEX}`],
    ['discokey', parseDiscoKey, `discokey:${HEX}`],
    ['mkey', parseMachineKey, `mkey:${HEX}`],
  ] as const)('%s: accepts lowercase and uppercase hex, yielding lowercase', (prefix, parse, text) => {
    expect(parse(text)).toBe(text);
    expect(parse(`${prefix}:${HEX.toUpperCase()}`)).toBe(text);
  });

  it.each([
    ['wrong kind of prefix', `mkey:${HEX}`],
    ['uppercase prefix (Go matches it case-sensitively)', `NODEKEY:${HEX}`],
    ['63 hex digits', `nodekey:${HEX.slice(1)}`],
    ['65 hex digits', `nodekey:${HEX}0`],
    ['non-hex digit', `nodekey:${HEX.slice(1)}g`],
    ['empty (Go rejects "" for a key field)', ''],
    ['no prefix', HEX],
  ])('rejects a node key with %s', (_name, text) => {
    expect(parseNodeKey(text)).toBeNull();
    expect(NodeKey.safeParse(text).success).toBe(false);
  });

  it('has zero constants that parse as their kind and report zero', () => {
    expect(ZERO_NODE_KEY).toBe(`nodekey:${'0'.repeat(64)}`);
    expect(ZERO_DISCO_KEY).toBe(`discokey:${'0'.repeat(64)}`);
    expect(ZERO_MACHINE_KEY).toBe(`mkey:${'0'.repeat(64)}`);
    expect([ZERO_NODE_KEY, ZERO_DISCO_KEY, ZERO_MACHINE_KEY].every(isZeroKey)).toBe(true);
    expect(isZeroKey(NodeKey.parse(`nodekey:${HEX}`))).toBe(false);
    expect(keyHex(DiscoKey.parse(`discokey:${HEX}`))).toBe(HEX);
    expect(MachineKey.safeParse(ZERO_NODE_KEY).success).toBe(false);
  });

  it.each([
    [7, '7'],
    ['7', '7'],
    ['007', '7'],
    [0, '0'],
    [2 ** 53 - 1, '9007199254740991'],
  ] as const)('node ID %j → %s', (input, want) => {
    const id = parseNodeId(input);
    expect(id).toBe(want);
    expect(nodeIdNumber(id!)).toBe(Number(want));
  });

  it.each([[-1], [1.5], [2 ** 53], ['-1'], ['7a'], [''], ['99999999999999999']])('rejects node ID %j', (input) => {
    expect(parseNodeId(input)).toBeNull();
  });

  it('round-trips any key through its text form (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (bytes) => {
        const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
        expect(parseNodeKey(`nodekey:${hex.toUpperCase()}`)).toBe(`nodekey:${hex}`);
        expect(parseDiscoKey(`discokey:${hex}`)).toBe(`discokey:${hex}`);
        expect(NodeId.safeParse(bytes[0]!).success).toBe(true);
      }),
    );
  });
});

describe('Go times', () => {
  it.each([
    ['2026-07-21T13:28:35.123456789Z', Date.UTC(2026, 6, 21, 13, 28, 35, 123)],
    ['2026-07-21T13:28:35Z', Date.UTC(2026, 6, 21, 13, 28, 35)],
    ['2026-07-21T15:28:35.5+02:00', Date.UTC(2026, 6, 21, 13, 28, 35, 500)],
    ['0001-01-01T00:00:00Z', -62135596800000],
  ])('parses %s', (text, ms) => {
    expect(parseGoTime(text)).toBe(ms);
  });

  it.each([['yesterday'], ['2026-07-21'], ['2026-13-01T00:00:00Z'], ['2026-07-21T13:28:35'], ['']])('rejects %j', (text) => {
    expect(parseGoTime(text)).toBeNull();
  });

  it('recognises the zero time in any spelling, and a missing time as zero', () => {
    expect(isZeroTime(ZERO_TIME)).toBe(true);
    expect(isZeroTime('0001-01-01T01:00:00+01:00')).toBe(true);
    expect(isZeroTime(null)).toBe(true);
    expect(isZeroTime(undefined)).toBe(true);
    expect(isZeroTime('2026-07-21T13:28:35Z')).toBe(false);
    expect(parseGoTime(formatGoTime(1_784_640_515_123))).toBe(1_784_640_515_123);
  });
});

describe('Node as headscale sends it', () => {
  const initial = mapResponse('initial-map');
  const peers = initial.Peers!;
  const [peer2, peer3] = peers;

  it('parses the self node of a 0.27-style full map with explicit zero values', () => {
    const self = initial.Node!;
    expect(self.ID).toBe('1');
    expect(self.Key).toMatch(/^nodekey:[0-9a-f]{64}$/);
    expect(self.KeyExpiry).toBe(ZERO_TIME);
    expect(self.HomeDERP).toBe(999);
    expect(self.Addresses).toEqual(['100.64.0.1/32', 'fd7a:115c:a1e0::1/128']);
    expect(self.CapMap).toEqual({
      'https://tailscale.com/cap/is-admin': [],
      'https://tailscale.com/cap/ssh': null,
      'https://tailscale.com/cap/file-sharing': [],
    });
    expect(self).not.toHaveProperty('DERP');
  });

  it('folds the legacy DERP string into HomeDERP when HomeDERP is absent', () => {
    expect(peer3!.HomeDERP).toBe(999);
    expect(peer2!.HomeDERP).toBe(1);
  });

  it.each([
    ['HomeDERP wins over the legacy string', { DERP: '127.3.3.40:5', HomeDERP: 7 }, 7],
    ['not the magic IP', { DERP: '127.0.0.1:5' }, 0],
    ['not a number', { DERP: '127.3.3.40:x' }, 0],
    ['"unknown" region 0 (headscale ≤ 0.28)', { DERP: '127.3.3.40:0' }, 0],
  ])('legacy DERP: %s', (_name, extra, home) => {
    const n = Node.parse({ ID: 9, Key: `nodekey:${HEX}`, ...extra });
    expect(n.HomeDERP).toBe(home);
  });

  it('normalises nil slices, zero keys, null Hostinfo and upper-case key hex', () => {
    const raw = (fixtureObject('initial-map').Peers as Record<string, unknown>[])[1]!;
    expect(raw.Key).toMatch(/^nodekey:[0-9A-F]{64}$/);
    expect(peer3!.Key).toBe(String(raw.Key).toLowerCase());
    expect(peer3!.Endpoints).toEqual([]);
    expect(peer3!.Hostinfo).toBeUndefined();
    expect(peer3!.Machine).toBe(ZERO_MACHINE_KEY);
    expect(peer3!.AllowedIPs).toEqual(['10.0.0.0/24', '100.64.0.3/32', 'fd7a:115c:a1e0::3/128']);
    expect(peer3!.PrimaryRoutes).toEqual(['10.0.0.0/24']);
    expect(peer3!.Online).toBe(false);
    expect(peer3!.LastSeen).toBe('2026-07-21T12:00:00Z');
  });

  it('reads a 0.29-style node with zero values omitted', () => {
    const self = mapResponse('initial-map-0.29').Node!;
    expect(self.KeyExpiry).toBe(ZERO_TIME);
    expect(self.AllowedIPs).toEqual(['100.64.0.7/32']);
    expect(self.Endpoints).toEqual([]);
    expect(self.Tags).toEqual([]);
    expect(self.Expired).toBe(false);
    expect(self.LastSeen).toBeUndefined();
  });

  it('copies Addresses into a null AllowedIPs but keeps an explicit []', () => {
    const base = { ID: 5, Key: `nodekey:${HEX}`, Addresses: ['100.64.0.5/32'] };
    expect(Node.parse({ ...base, AllowedIPs: null }).AllowedIPs).toEqual(['100.64.0.5/32']);
    expect(Node.parse(base).AllowedIPs).toEqual(['100.64.0.5/32']);
    expect(Node.parse({ ...base, AllowedIPs: [] }).AllowedIPs).toEqual([]);
  });

  it('keeps unknown Hostinfo fields verbatim, drops unknown Node fields, and tolerates a mistyped Hostinfo field', () => {
    expect(peer2!.Hostinfo).toMatchObject({ Hostname: 'server', DistroCodeName: 'noble', GoArchVar: 'v1' });
    expect(peer2!.Hostinfo!.NetInfo).toMatchObject({ PreferredDERP: 1, MappingVariesByDestIP: false, LinkType: 'wired' });
    const n = Node.parse({ ID: 4, SomethingNew: { a: 1 }, Hostinfo: { Hostname: 42, OS: 'linux' } });
    expect(n).not.toHaveProperty('SomethingNew');
    expect(n.Hostinfo).toMatchObject({ OS: 'linux' });
    expect(n.Hostinfo!.Hostname).toBeUndefined();
    expect(n.Key).toBe(ZERO_NODE_KEY);
    expect(n.DiscoKey).toBe(ZERO_DISCO_KEY);
  });

  it('accepts null for plain Go fields the way encoding/json does', () => {
    const n = Node.parse({ ID: 4, Name: null, User: null, MachineAuthorized: null, Online: null, Key: null, Created: null });
    expect(n).toMatchObject({ Name: '', User: 0, MachineAuthorized: false, Key: ZERO_NODE_KEY, Created: ZERO_TIME });
    expect(n.Online).toBeUndefined();
  });
});

describe('MapResponse', () => {
  it.each([
    'initial-map',
    'initial-map-0.29',
    'keepalive',
    'keepalive-0.26',
    'peers-changed',
    'peers-removed',
    'patch-key-rotation',
    'patch-derp-endpoints',
    'patch-online',
    'online-change',
    'peer-seen-change',
    'derp-map-update',
    'derp-map-homeparams-only',
    'full-peers-again',
    'policy-change',
    'self-update',
    'ping-request',
  ])('parses fixture %s', (name) => {
    expect(MapResponse.safeParse(fixture(name)).success).toBe(true);
  });

  it.each([
    ['bad-peers-not-array', /^Peers$/, /expected array/],
    ['bad-key-prefix', /^PeersChanged\.0\.Key$/, /nodekey:/],
    ['bad-time', /^PeersChanged\.0\.KeyExpiry$/, /RFC 3339/],
    ['bad-online-change-key', /^OnlineChange$/, /not a node ID/],
  ])('rejects fixture %s at the right path', (name, path, message) => {
    const r = MapResponse.safeParse(fixture(name));
    expect(r.success).toBe(false);
    const issue = r.error!.issues[0]!;
    expect(issue.path.join('.')).toMatch(path);
    expect(issue.message).toMatch(message);
  });

  it('ignores unknown top-level fields and reads the full map', () => {
    const m = mapResponse('initial-map');
    expect(m).not.toHaveProperty('UnknownFutureField');
    expect(m.KeepAlive).toBe(false);
    expect(m.CollectServices).toBe(false);
    expect(m.Domain).toBe('hs.example.com');
    expect(m.PacketFilters?.base?.[0]).toMatchObject({ SrcIPs: ['*'], DstPorts: [{ IP: '*', Ports: { First: 0, Last: 65535 } }], IPProto: [] });
    expect(m.DNSConfig?.Routes).toEqual({ 'corp.example.com': [{ Addr: '10.0.0.53' }], 'tailnet.example.com': null });
    expect(m.UserProfiles?.map((u) => u.LoginName)).toEqual(['alice@example.com', 'tagged-devices']);
    expect(m.SSHPolicy).toEqual({ rules: [] });
    expect(m.Debug).toEqual({ DisableLogTail: true });
  });

  it('distinguishes absent from empty slices in deltas', () => {
    expect(MapResponse.parse({}).Peers).toBeUndefined();
    expect(MapResponse.parse({ Peers: null }).Peers).toBeUndefined();
    expect(MapResponse.parse({ Peers: [] }).Peers).toEqual([]);
    expect(MapResponse.parse({ Health: [] }).Health).toEqual([]);
    expect(MapResponse.parse(null)).toMatchObject({ KeepAlive: false, Domain: '' });
  });

  it('reads keep-alives of both headscale generations', () => {
    expect(mapResponse('keepalive').KeepAlive).toBe(true);
    expect(mapResponse('keepalive').ControlTime).toBeUndefined();
    expect(mapResponse('keepalive-0.26')).toMatchObject({ KeepAlive: true, ControlTime: '2026-07-21T13:29:30Z' });
  });

  it('reads OnlineChange/PeerSeenChange maps keyed by decimal IDs', () => {
    expect(mapResponse('online-change').OnlineChange).toEqual([
      ['2', false],
      ['4', true],
      ['99', true],
    ]);
    expect(mapResponse('peer-seen-change').PeerSeenChange).toEqual([
      ['2', true],
      ['4', false],
    ]);
  });

  it('rejects a message that is not an object', () => {
    for (const v of [[], 'x', 5, true]) expect(MapResponse.safeParse(v).success).toBe(false);
  });
});

describe('PeerChange', () => {
  it('keeps absent fields undefined and an empty Endpoints list as a replacement', () => {
    const pc = PeerChange.parse({ NodeID: 2, Online: true });
    expect(pc).toMatchObject({ NodeID: '2', Online: true, DERPRegion: 0, Cap: 0 });
    expect(pc.Endpoints).toBeUndefined();
    expect(pc.Key).toBeUndefined();
    expect(PeerChange.parse({ NodeID: 2, Endpoints: [] }).Endpoints).toEqual([]);
    expect(PeerChange.parse({ NodeID: 2, Endpoints: null }).Endpoints).toBeUndefined();
  });

  it('requires a NodeID', () => {
    expect(PeerChange.safeParse({ Online: true }).success).toBe(false);
  });
});

describe('DERPMap on the wire', () => {
  it('drops null regions and maps omitDefaultRegions', () => {
    const dm = DerpMapWire.parse({ Regions: { '1': null, '900': { RegionID: 900, RegionCode: 'x', Nodes: [] } }, omitDefaultRegions: true });
    expect(Object.keys(dm.Regions!)).toEqual(['900']);
    expect(dm.OmitDefaultRegions).toBe(true);
  });

  it('leaves null Regions/HomeParams undefined for the session to keep the old ones', () => {
    const dm = DerpMapWire.parse({ Regions: null, HomeParams: null });
    expect(dm.Regions).toBeUndefined();
    expect(dm.HomeParams).toBeUndefined();
  });
});

describe('register and map requests', () => {
  it('parses a pre-auth RegisterRequest as the client sends it', () => {
    const r = RegisterRequest.parse(fixture('register-request-preauth'));
    expect(r.Version).toBe(130);
    expect(r.Auth?.AuthKey).toBe('hskey-auth-abcdef-0123456789');
    expect(r.OldNodeKey).toBe(ZERO_NODE_KEY);
    expect(r.Expiry).toBe(ZERO_TIME);
  });

  it('rejects a RegisterRequest with an empty NodeKey (headscale would fail to decode it)', () => {
    expect(RegisterRequest.safeParse({ Version: 130, NodeKey: '' }).success).toBe(false);
  });

  it.each([
    ['register-response-ok', { MachineAuthorized: true, AuthURL: '', Error: '', NodeKeyExpired: false }],
    ['register-response-authurl', { MachineAuthorized: false, AuthURL: 'https://hs.example.com/register/hskey-authreq-0123456789abcdef01234567' }],
    ['register-response-error', { Error: 'authkey expired' }],
  ])('parses %s', (name, want) => {
    expect(RegisterResponse.parse(fixture(name))).toMatchObject(want);
  });

  it('accepts the literal null body sent after an ephemeral node is deleted', () => {
    expect(RegisterResponseBody.parse(null)).toBeNull();
  });

  it('parses a streaming MapRequest and keeps its Hostinfo extras', () => {
    const r = MapRequest.parse(fixture('map-request'));
    expect(r).toMatchObject({ Stream: true, Compress: 'zstd', EndpointTypes: [2, 1] });
    expect(r.Hostinfo?.NetInfo?.PreferredDERP).toBe(999);
    expect(r.Hostinfo).toHaveProperty('AppConnector', false);
  });

  it('round-trips a MapRequest built in code through JSON', () => {
    const req: MapRequest = {
      Version: 130,
      NodeKey: NodeKey.parse(`nodekey:${HEX}`),
      DiscoKey: DiscoKey.parse(`discokey:${HEX}`),
      Stream: true,
      Hostinfo: { Hostname: 'weft', OS: 'linux', NetInfo: { PreferredDERP: 999 } },
      Endpoints: ['192.0.2.1:41641'],
      EndpointTypes: [2],
    };
    expect(MapRequest.parse(JSON.parse(JSON.stringify(req)))).toEqual(req);
  });
});
