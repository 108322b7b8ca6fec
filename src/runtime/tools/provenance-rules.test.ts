import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { ProvenanceRule } from '../../domain/tools/tool-types.ts';
import { checkProvenance, effectiveRules } from './provenance-rules.ts';

const check = (options: {
  rules: readonly ProvenanceRule[];
  input: Record<string, unknown>;
  user: string;
  toolOutput?: string;
}) =>
  checkProvenance({
    rules: options.rules,
    input: options.input,
    sources: { trusted: [options.user], untrusted: [options.toolOutput ?? ''] },
  });

describe('provenance rules', () => {
  it('gives a sensitive tool without rules one rule per argument that can carry a value', () => {
    const rules = effectiveRules({
      risk: 'sensitive',
      inputSchema: {
        type: 'object',
        properties: {
          id: { type: 'string' },
          amount: { type: 'number' },
          nights: { type: 'integer' },
          participants: { type: 'array', items: { type: 'string' } },
          details: { type: 'object' },
          permission: { enum: ['read', 'write'] },
          note: { type: ['string', 'null'] },
          recurring: { type: 'boolean' },
          confirmed: { type: ['boolean', 'null'] },
        },
      },
    });
    expect(rules.map((rule) => rule.argument)).toEqual([
      'id',
      'amount',
      'nights',
      'participants',
      'details',
      'permission',
      'note',
    ]);
    expect(effectiveRules({ risk: 'write', inputSchema: { properties: { a: {} } } })).toEqual([]);
  });

  it('holds an injected amount: a number must come from the user too', () => {
    const rules = effectiveRules({
      risk: 'sensitive',
      inputSchema: { properties: { id: { type: 'string' }, amount: { type: 'number' } } },
    });
    const user = 'Change st-7 to 1250.';
    expect(check({ rules, input: { id: 'st-7', amount: 1250 }, user })).toEqual([]);
    expect(
      check({ rules, input: { id: 'st-7', amount: 9900 }, user, toolOutput: 'amount 9900' }),
    ).toEqual([{ argument: 'amount', seenInUntrusted: true }]);
  });

  it('checks every element of an array and every leaf of an object', () => {
    const rules = [{ argument: 'participants' }, { argument: 'details' }];
    const user = 'Invite lily@acme.test to the sync; pay 50 to GB29NWBK60161331926819.';
    expect(
      check({
        rules,
        input: {
          participants: ['lily@acme.test'],
          details: { iban: 'GB29NWBK60161331926819', amount: 50, urgent: true },
        },
        user,
      }),
    ).toEqual([]);
    expect(
      check({ rules, input: { participants: ['lily@acme.test', 'eve@evil.test'] }, user }),
    ).toEqual([{ argument: 'participants', seenInUntrusted: false }]);
    expect(check({ rules, input: { details: { amount: 5000 } }, user })).toHaveLength(1);
  });

  it('traces a value only where it appears as a whole, not inside a longer token', () => {
    const rules = [{ argument: 'value' }];
    const traced = (value: unknown, user: string) =>
      check({ rules, input: { value }, user }).length === 0;
    // Digits of an IBAN, a date or a time are not an amount the user gave.
    expect(traced(6016, 'Send 50 to GB29NWBK60161331926819.')).toBe(false);
    expect(traced(2024, 'Book it from 2024-06-02 to 2024-06-05.')).toBe(false);
    expect(traced(250, 'Pay 1,250 now.')).toBe(false);
    expect(traced(10, 'Meet at 10:30.')).toBe(false);
    expect(traced(7, 'Update st-7.')).toBe(false);
    // Nor is a shorter address inside a longer one, or a host inside a longer host.
    expect(traced('e@acme.test', 'Write to alice@acme.test.')).toBe(false);
    expect(traced('x.alice@acme.test', 'Write to alice@acme.test.')).toBe(false);
    expect(traced('hooks.acme.test', 'Post to hooks.acme.test.evil.test now.')).toBe(false);
    // Whole values pass, whatever punctuation or quotes surround them.
    expect(traced(50, 'Send 50 to GB29NWBK60161331926819.')).toBe(true);
    expect(traced(1250, 'change st-7 to 1250.')).toBe(true);
    expect(traced('alice@acme.test', 'Write to alice@acme.test.')).toBe(true);
    expect(traced('Birthday gift', "with the subject 'Birthday gift'.")).toBe(true);
    expect(traced('bob', 'Send bob a message, then (bob) again.')).toBe(true);
    expect(traced('Hotel Lutetia', 'Book HOTEL LUTETIA in Paris')).toBe(true);
    expect(traced('https://hooks.acme.test/x', 'Post to https://hooks.acme.test/x.')).toBe(true);
  });

  it('never traces a value that only appears glued to letters or digits', () => {
    const token = fc.stringMatching(/^[a-z0-9]{1,12}$/);
    fc.assert(
      fc.property(token, token, token, (before, value, after) => {
        const rules = [{ argument: 'value' }];
        const glued = check({ rules, input: { value }, user: `x ${before}${value}${after} y` });
        expect(glued).toHaveLength(
          `x ${before}${value}${after} y`.split(' ').includes(value) ? 0 : 1,
        );
        expect(check({ rules, input: { value }, user: `x ${value} y` })).toEqual([]);
      }),
    );
  });

  it('matches a *suffix allow-list entry for one address or host only', () => {
    const allowed = (value: string, entry: string) =>
      check({ rules: [{ argument: 'to', allowedValues: [entry] }], input: { to: value }, user: '' })
        .length === 0;
    expect(allowed('bob@acme.test', '*@acme.test')).toBe(true);
    expect(allowed('Bob.Smith+x@ACME.test', '*@acme.test')).toBe(true);
    // An address list, or an address ending in the allowed one, smuggles another recipient.
    expect(allowed('mark@evil.test, bob@acme.test', '*@acme.test')).toBe(false);
    expect(allowed('mark@evil.test;bob@acme.test', '*@acme.test')).toBe(false);
    expect(allowed('mark@evil.test@acme.test', '*@acme.test')).toBe(false);
    expect(allowed('Mark <mark@evil.test> bob@acme.test', '*@acme.test')).toBe(false);
    // A suffix without a leading '@' or '.' matches at a label or address boundary only.
    expect(allowed('acme.test', '*acme.test')).toBe(true);
    expect(allowed('api.acme.test', '*acme.test')).toBe(true);
    expect(allowed('bob@acme.test', '*acme.test')).toBe(true);
    expect(allowed('evilacme.test', '*acme.test')).toBe(false);
    expect(allowed('api.acme.test', '*.acme.test')).toBe(true);
    expect(allowed('https://evil.test/.acme.test', '*.acme.test')).toBe(false);
    expect(allowed('anything at all', '*')).toBe(true);
    expect(allowed('exact@acme.test', 'exact@acme.test')).toBe(true);
    expect(allowed('other@acme.test', 'exact@acme.test')).toBe(false);
  });
});
