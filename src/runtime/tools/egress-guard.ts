import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';

/** Where tools may send requests. */
export interface EgressPolicy {
  /**
   * Hosts (`host` or `host:port`) explicitly allowed; when non-empty, every other host is
   * refused. A host named here is trusted even if it resolves to a private address.
   */
  readonly allowedHosts: readonly string[];
  /** Allow private, loopback, link-local and unique-local addresses for unlisted hosts. */
  readonly allowPrivateNetworks: boolean;
  /** Resolves a host name to its addresses (tests hand in a fake). */
  readonly resolve?: (host: string) => Promise<readonly string[]>;
}

const privateRanges = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  privateRanges.addSubnet(network, prefix, 'ipv4');
for (const [network, prefix] of [
  ['::', 128],
  ['::1', 128],
  // Local-use NAT64 (RFC 8215): the IPv4 address it leads to is the operator's to define.
  ['64:ff9b:1::', 48],
  ['100::', 64],
  // Teredo: the IPv4 address it leads to is embedded obfuscated.
  ['2001::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  // Site-local (deprecated, still routed inside some networks).
  ['fec0::', 10],
  ['ff00::', 8],
] as const)
  privateRanges.addSubnet(network, prefix, 'ipv6');

/** True for an address a tool must not reach unless allowed: private, loopback, link-local… */
export function isPrivateAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return privateRanges.check(address, 'ipv4');
  if (family === 6) {
    const embedded = embeddedIpv4(address);
    if (embedded !== undefined) return privateRanges.check(embedded, 'ipv4');
    return privateRanges.check(address, 'ipv6');
  }
  return true;
}

/** The eight 16-bit groups of an IPv6 address (dotted IPv4 tails folded in). */
function hextets(address: string): number[] {
  let text = address.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...Array(zeros).fill('0'), ...right].map((group) => Number.parseInt(group, 16));
}

/**
 * The IPv4 address an IPv6 address leads to, for the forms that embed one: IPv4-compatible
 * (`::a.b.c.d`), IPv4-mapped (`::ffff:a.b.c.d`), IPv4-translated (`::ffff:0:a.b.c.d`, RFC
 * 2765), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`).
 */
function embeddedIpv4(address: string): string | undefined {
  const groups = hextets(address);
  if (groups.length !== 8 || groups.some((group) => Number.isNaN(group))) return undefined;
  const ipv4 = (high: number, low: number) =>
    `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
  const [g0, g1, g2, g3, g4, g5, g6, g7] = groups as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (g0 === 0x2002) return ipv4(g1, g2);
  const zeroPrefix = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0;
  if (zeroPrefix && (g5 === 0 || g5 === 0xffff) && !(g5 === 0 && g6 === 0)) return ipv4(g6, g7);
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0xffff && g5 === 0)
    return ipv4(g6, g7);
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0)
    return ipv4(g6, g7);
  return undefined;
}

/** True when `url`'s host is on the list (`host` or `host:port`). */
export function isListedHost(url: URL, hosts: readonly string[]): boolean {
  return hosts.includes(url.host) || hosts.includes(url.hostname);
}

/**
 * Problems with a URL a tool is about to call, without resolving it (checked when a tool is
 * defined): http(s) only, no credentials in the URL, the host on the allow-list when there is
 * one, and no literal private address unless allowed.
 */
export function staticEgressProblems(url: URL, policy: EgressPolicy): string[] {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return ['only http and https URLs are allowed'];
  if (url.username !== '' || url.password !== '')
    return ['URLs must not carry credentials; use auth with a named credential'];
  if (isListedHost(url, policy.allowedHosts)) return [];
  if (policy.allowedHosts.length > 0) return [`host ${url.host} is not on the allow-list`];
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  if (
    !policy.allowPrivateNetworks &&
    (isIP(literal) !== 0 ? isPrivateAddress(literal) : /^localhost$|\.localhost$/i.test(literal))
  )
    return [`host ${url.host} is a private or loopback address`];
  return [];
}

/**
 * Refuses a call to `url` unless the policy allows it; resolves the host name and refuses it
 * when any address is private (unless the host is listed or private networks are allowed).
 * A DNS answer can change between this check and the connection: see docs/tools.md.
 */
export async function assertEgressAllowed(url: URL, policy: EgressPolicy): Promise<void> {
  const problems = staticEgressProblems(url, policy);
  if (problems.length > 0) throw new Error(problems.join('; '));
  if (isListedHost(url, policy.allowedHosts) || policy.allowPrivateNetworks) return;
  const literal = url.hostname.replace(/^\[|\]$/g, '');
  const addresses =
    isIP(literal) !== 0
      ? [literal]
      : await (policy.resolve ?? defaultResolve)(literal).catch(() => {
          throw new Error(`host ${url.hostname} does not resolve`);
        });
  if (addresses.length === 0 || addresses.some(isPrivateAddress))
    throw new Error(`host ${url.host} resolves to a private or loopback address`);
}

async function defaultResolve(host: string): Promise<readonly string[]> {
  const answers = await lookup(host, { all: true, verbatim: true });
  return answers.map((answer) => answer.address);
}
