import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isPrivateAddress } from './egress-guard.ts';

const hex = (a: number, b: number) => ((a << 8) | b).toString(16);

describe('isPrivateAddress', () => {
  it('refuses every IPv6 form that leads to a private IPv4 address', () => {
    const privateIpv4 = fc.oneof(
      fc.tuple(fc.constant(127), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(10), fc.nat(255), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(169), fc.constant(254), fc.nat(255), fc.nat(255)),
      fc.tuple(fc.constant(192), fc.constant(168), fc.nat(255), fc.nat(255)),
    );
    fc.assert(
      fc.property(privateIpv4, ([a, b, c, d]) => {
        const forms = [
          `${a}.${b}.${c}.${d}`,
          `::ffff:${a}.${b}.${c}.${d}`,
          `::ffff:${hex(a, b)}:${hex(c, d)}`,
          `::${hex(a, b)}:${hex(c, d)}`,
          `64:ff9b::${hex(a, b)}:${hex(c, d)}`,
          `::ffff:0:${a}.${b}.${c}.${d}`,
          `::ffff:0:${hex(a, b)}:${hex(c, d)}`,
          `2002:${hex(a, b)}:${hex(c, d)}::1`,
          // How the WHATWG URL parser spells a bracketed host.
          new URL(`http://[::ffff:${a}.${b}.${c}.${d}]/`).hostname.slice(1, -1),
        ];
        for (const form of forms) expect(isPrivateAddress(form), form).toBe(true);
      }),
    );
  });

  it('allows public addresses in every form', () => {
    for (const address of [
      '8.8.8.8',
      '::ffff:8.8.8.8',
      '::ffff:0:8.8.8.8',
      '64:ff9b::808:808',
      '2606:4700::1111',
    ])
      expect(isPrivateAddress(address), address).toBe(false);
  });

  it('refuses loopback, link-local, unique-local and unspecified IPv6', () => {
    for (const address of [
      '::',
      '::1',
      'fe80::1',
      'fd12:3456::1',
      'ff02::1',
      'fec0::1',
      '64:ff9b:1::a00:1',
      '2001:0:4136:e378:8000:63bf:3fff:fdd2',
      '100::1',
    ])
      expect(isPrivateAddress(address), address).toBe(true);
  });
});
