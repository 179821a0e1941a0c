/**
 * Shared pieces of the MagicDNS tests: headscale-shaped DNSConfigs (headscale 0.29.2 `generateDNSConfig`), nodes,
 * and queries / responses through dns-packet.
 */
import dnsPacket, { type Answer, type DecodedPacket, type Packet, type RecordType } from 'dns-packet';
import { DnsConfig } from '../../../../src-main/protocol/control/tailcfg.ts';
import { dnsPlan, type DnsNode, type DnsPlan, type DnsPlanInput } from '../../../../src-main/engine/dns/plan.ts';

/** The 0.29.2 example: magic_dns on, base ts.example.com, override on, corp.example split, lab.example empty. */
export const HS_0292_OVERRIDE_ON = {
  Resolvers: [{ Addr: '1.1.1.1' }],
  Routes: { 'corp.example': [{ Addr: '10.0.0.53' }], 'lab.example': null },
  Domains: ['ts.example.com'],
  Proxied: true,
  ExtraRecords: [{ Name: 'grafana.ts.example.com', Type: 'A', Value: '100.64.0.3' }],
};

/** The same tailnet with override_local_dns off: the global nameservers move to FallbackResolvers. */
export const HS_0292_OVERRIDE_OFF = {
  FallbackResolvers: [{ Addr: '1.1.1.1' }],
  Routes: { 'corp.example': [{ Addr: '10.0.0.53' }], 'lab.example': null },
  Domains: ['ts.example.com'],
  Proxied: true,
  ExtraRecords: [{ Name: 'grafana.ts.example.com', Type: 'A', Value: '100.64.0.3' }],
};

/** Parses a DNSConfig as the map session does (nulls and all). */
export function dnsConfig(json: unknown): DnsConfig {
  return DnsConfig.parse(json);
}

export const SELF: DnsNode = { Name: 'me.ts.example.com.', Addresses: ['100.64.0.1/32', 'fd7a:115c:a1e0::1/128'], CapMap: undefined };
export const LAPTOP: DnsNode = { Name: 'laptop.ts.example.com.', Addresses: ['100.64.0.2/32', 'fd7a:115c:a1e0::2/128'], CapMap: undefined };
export const V6ONLY: DnsNode = { Name: 'v6only.ts.example.com.', Addresses: ['fd7a:115c:a1e0::9/128'], CapMap: undefined };

/** A plan that must be usable. */
export function planOf(input: Partial<DnsPlanInput> & { dnsConfig: DnsPlanInput['dnsConfig'] }): DnsPlan {
  const r = dnsPlan({ self: SELF, peers: [LAPTOP, V6ONLY], acceptDns: true, osBase: null, ...input });
  if (!r.ok) throw new Error(r.error);
  return r.plan;
}

export interface QueryOpts {
  id?: number;
  edns?: number;
  ednsVersion?: number;
  rd?: boolean;
}

/** A standard query for one name. */
export function query(name: string, type: RecordType | `UNKNOWN_${number}` | 'ANY', opts: QueryOpts = {}): Uint8Array {
  const p: Packet = {
    type: 'query',
    id: opts.id ?? 0x1234,
    flags: opts.rd === false ? 0 : dnsPacket.RECURSION_DESIRED,
    questions: [{ name, type: type as RecordType, class: 'IN' }],
    additionals:
      opts.edns === undefined
        ? []
        : [{ type: 'OPT', name: '.', udpPayloadSize: opts.edns, extendedRcode: 0, ednsVersion: opts.ednsVersion ?? 0, flags: 0, flag_do: false, options: [] }],
  };
  return dnsPacket.encode(p);
}

export type Decoded = DecodedPacket & { rcode: string; opcode: string };

export function decode(bytes: Uint8Array): Decoded {
  return dnsPacket.decode(Buffer.from(bytes)) as Decoded;
}

/** The data of the answers, as strings. */
export function answerData(d: Decoded): string[] {
  return (d.answers ?? []).map((a: Answer) => ('data' in a ? String(a.data) : a.type));
}
