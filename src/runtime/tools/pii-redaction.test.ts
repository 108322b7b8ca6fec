import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ibanLength,
  isLuhnValid,
  isValidIban,
  type PiiKind,
  piiKinds,
  redactPii,
} from './pii-redaction.ts';

const all: readonly PiiKind[] = piiKinds;
const redact = (text: string, kinds: readonly PiiKind[] = all) => redactPii(text, kinds).text;

/** A payment card number with a real network prefix and a Luhn check digit. */
const cardNumber = fc
  .record({
    brand: fc.constantFrom(
      { prefix: '4', length: 16 },
      { prefix: '4', length: 13 },
      { prefix: '4', length: 19 },
      { prefix: '51', length: 16 },
      { prefix: '55', length: 16 },
      { prefix: '2221', length: 16 },
      { prefix: '34', length: 15 },
      { prefix: '37', length: 15 },
      { prefix: '6011', length: 16 },
      { prefix: '3528', length: 16 },
      { prefix: '62', length: 19 },
    ),
    body: fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 18, maxLength: 18 }),
    format: fc.constantFrom('plain', 'spaces', 'dashes'),
  })
  .map(({ brand, body, format }) => {
    const partial = `${brand.prefix}${body.join('')}`.slice(0, brand.length - 1);
    const check = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].find((digit) => isLuhnValid(`${partial}${digit}`));
    const digits = `${partial}${check}`;
    if (format === 'plain') return digits;
    return (digits.match(/.{1,4}/g) ?? []).join(format === 'spaces' ? ' ' : '-');
  });

const countries = ['DE', 'GB', 'FR', 'NL', 'BE', 'NO', 'IT', 'ES', 'CH', 'PL', 'MT', 'LC'];

function mod97(text: string): number {
  let remainder = 0;
  for (const character of text) {
    const value = /\d/.test(character) ? character : String(character.charCodeAt(0) - 55);
    for (const digit of value) remainder = (remainder * 10 + Number(digit)) % 97;
  }
  return remainder;
}

/** An IBAN of a real country's length, with correct (or deliberately wrong) check digits. */
const iban = (valid: boolean) =>
  fc
    .record({
      country: fc.constantFrom(...countries),
      bban: fc.array(fc.constantFrom(...'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'), {
        minLength: 30,
        maxLength: 30,
      }),
      wrongBy: fc.integer({ min: 1, max: 96 }),
      grouped: fc.boolean(),
    })
    .map(({ country, bban, wrongBy, grouped }) => {
      const body = bban.join('').slice(0, (ibanLength(country) ?? 22) - 4);
      const check = 98 - mod97(`${body}${country}00`);
      const digits = valid ? check : ((check - 2 + wrongBy) % 97) + 2;
      const compact = `${country}${String(digits).padStart(2, '0')}${body}`;
      return grouped ? (compact.match(/.{1,4}/g) ?? []).join(' ') : compact;
    });

const prose = fc
  .array(fc.stringMatching(/^[A-Za-z]{1,12}$/), { minLength: 0, maxLength: 30 })
  .chain((words) =>
    fc
      .array(fc.constantFrom(' ', ', ', '. ', '\n', ' - ', ' (', ') ', ': ', '! ', "'"), {
        minLength: words.length,
        maxLength: words.length,
      })
      .map((separators) => words.map((word, index) => `${word}${separators[index]}`).join('')),
  );

describe('PII redaction', () => {
  it('redacts every Luhn-valid card number, plain or grouped by spaces or dashes', () => {
    fc.assert(
      fc.property(cardNumber, (card) => {
        expect(isLuhnValid(card.replace(/\D/g, ''))).toBe(true);
        expect(redact(`paid with ${card} today`)).toBe('paid with [redacted:card] today');
        expect(redact(`paid with ${card}.`, ['card'])).toBe('paid with [redacted:card].');
      }),
    );
  });

  it('leaves a card number whose Luhn check fails', () => {
    fc.assert(
      fc.property(cardNumber, fc.integer({ min: 1, max: 9 }), (card, delta) => {
        const last = Number(card.at(-1));
        const broken = `${card.slice(0, -1)}${(last + delta) % 10}`;
        expect(redact(`card ${broken} ok`, ['card'])).toBe(`card ${broken} ok`);
      }),
    );
  });

  it('leaves random prose without digits unchanged', () => {
    fc.assert(
      fc.property(prose, (text) => {
        expect(redactPii(text, all)).toEqual({ text, redacted: 0 });
      }),
      { numRuns: 300 },
    );
  });

  it('redacts IBANs whose mod-97 check holds, and leaves the others as written', () => {
    fc.assert(
      fc.property(iban(true), iban(false), (good, bad) => {
        expect(isValidIban(good)).toBe(true);
        expect(isValidIban(bad)).toBe(false);
        expect(redact(`pay ${good} now`)).toBe('pay [redacted:iban] now');
        // An invalid IBAN is not mistaken for a card or phone number either.
        expect(redact(`pay ${bad} now`)).toBe(`pay ${bad} now`);
      }),
    );
  });

  it('redacts an IBAN whose length is a multiple of four before a capitalised word', () => {
    expect(redact('BE68 5390 0754 7034 OK?')).toBe('[redacted:iban] OK?');
    expect(redact('IBAN: GB82 WEST 1234 5698 7654 32.')).toBe('IBAN: [redacted:iban].');
  });

  it('redacts e-mail addresses and only the kinds asked for', () => {
    const text = 'write to jane.doe+work@example.co.uk or call +44 20 7946 0958';
    expect(redact(text)).toBe('write to [redacted:email] or call [redacted:phone]');
    expect(redact(text, ['email'])).toBe('write to [redacted:email] or call +44 20 7946 0958');
    expect(redact(text, [])).toBe(text);
  });

  it('redacts phone numbers in international and common national formats', () => {
    for (const phone of [
      '+1 415 555 2671',
      '+1 (415) 555-2671',
      '+4915123456789',
      '+33 1 23 45 67 89',
      '(415) 555-2671',
      '415-555-2671',
      '415.555.2671',
      '030 1234 5678',
      '01 23 45 67 89',
      '0151-234-56789',
      '020 7946 0958',
    ])
      expect(redact(`call ${phone} now`, ['phone']), phone).toBe('call [redacted:phone] now');
  });

  it('does not take amounts, dates, times, versions or plain numbers for phone numbers', () => {
    for (const text of [
      'Total: 1,234,567.89 EUR',
      'due 2024-05-06 at 10:30',
      'on 06/05/2024 or 06.05.2024 or 05-06-2024 10:30',
      'order 123456789 and invoice 4567890123',
      'version 1.2.3 and +5 points, 3 x 4 = 12',
      'room 0 and 1 000 000 people',
      'ISBN 978-3-16-148410-0',
      'between 10 and 20 items, 0.5 kg',
    ])
      expect(redact(text), text).toBe(text);
  });

  it('redacts US social security numbers, not impossible ones', () => {
    expect(redact('SSN 123-45-6789.', ['ssn'])).toBe('SSN [redacted:ssn].');
    for (const text of ['000-12-3456', '666-12-3456', '900-12-3456', '123-00-4567', '123-45-0000'])
      expect(redact(text, ['ssn'])).toBe(text);
  });
});
