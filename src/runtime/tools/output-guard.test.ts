import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createOutputGuard, createStreamGuard, secretForms } from './output-guard.ts';
import { piiKinds } from './pii-redaction.ts';

const guard = createOutputGuard({
  secrets: () => [],
  allowedLinkHosts: ['docs.example.com'],
  redactPii: piiKinds,
});

/** Streams `text` cut at `cuts` through a fresh stream guard; returns what was released. */
function stream(text: string, cuts: readonly number[]): { out: string; deltas: string[] } {
  const streamGuard = createStreamGuard(guard);
  const deltas: string[] = [];
  let from = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
    deltas.push(streamGuard.push(text.slice(from, cut)));
    from = cut;
  }
  deltas.push(streamGuard.push(text.slice(from)));
  deltas.push(streamGuard.flush());
  return { out: deltas.join(''), deltas };
}

const answers = [
  'Your card 4111 1111 1111 1111 was charged; call +44 20 7946 0958 or (415) 555-2671.',
  'Transfer to GB82 WEST 1234 5698 7654 32 and mail jane.doe@example.com, SSN 123-45-6789 ok',
  'Card 5555-5555-5555-4444\nIBAN DE89 3704 0044 0532 0130 00\nphone 030 1234 5678 thanks',
  'See [docs](https://docs.example.com/a) not ![x](https://evil.example/?q=4111111111111111) 4111 1111 1111 1111',
];

describe('the output guard on personal data', () => {
  it('replaces each kind with [redacted:<kind>] in a whole answer', () => {
    const result = guard.guard(answers[0] ?? '');
    expect(result.text).toBe(
      'Your card [redacted:card] was charged; call [redacted:phone] or [redacted:phone].',
    );
    expect(result.redactedPii).toBe(3);
  });

  it('redacts only the configured kinds (cards and SSNs by default in the configuration)', () => {
    const cardsOnly = createOutputGuard({
      secrets: () => [],
      allowedLinkHosts: [],
      redactPii: ['card', 'ssn'],
    });
    expect(cardsOnly.guard('mail me@example.com, card 4111 1111 1111 1111').text).toBe(
      'mail me@example.com, card [redacted:card]',
    );
    const none = createOutputGuard({ secrets: () => [], allowedLinkHosts: [] });
    expect(none.guard('card 4111 1111 1111 1111').text).toBe('card 4111 1111 1111 1111');
  });

  it('never releases part of a number split across deltas: the stream equals the whole', () => {
    for (const text of answers) {
      const whole = guard.guard(text).text;
      for (let cut = 0; cut <= text.length; cut += 1) {
        const { out, deltas } = stream(text, [cut]);
        expect(out, `cut at ${cut}`).toBe(whole);
        for (const delta of deltas) expect(delta).not.toMatch(/\d{4}[ -]\d{4}/);
      }
    }
  });

  it('gives the same text for any split into deltas (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...answers),
        fc.array(fc.nat({ max: 200 }), { maxLength: 12 }),
        (text, cuts) => {
          const { out } = stream(
            text,
            cuts.map((cut) => cut % (text.length + 1)),
          );
          expect(out).toBe(guard.guard(text).text);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('keeps streaming prose without numbers word by word', () => {
    const streamGuard = createStreamGuard(guard);
    expect(streamGuard.push('Hello there, ')).toBe('Hello there, ');
    expect(streamGuard.push('I paid 25 ')).toBe('I paid ');
    expect(streamGuard.push('euros yesterday')).toBe('25 euros ');
    expect(streamGuard.flush()).toBe('yesterday');
  });
});

describe('secretForms', () => {
  it('redacts a basic credential echoed whole, encoded, or as its password alone', () => {
    const secret = 'svc-user:pa ss"word/42';
    const guard = createOutputGuard({
      secrets: () => secretForms(secret, 'basic'),
      allowedLinkHosts: [],
    });
    const encoded = Buffer.from(secret).toString('base64');
    for (const echo of [
      secret,
      encoded,
      encoded.replace(/=+$/, ''),
      Buffer.from(secret).toString('base64url'),
      'pa ss"word/42',
      Buffer.from('pa ss"word/42').toString('base64'),
      encodeURIComponent('pa ss"word/42'),
      JSON.stringify('pa ss"word/42').slice(1, -1),
    ]) {
      const { text } = guard.redact(`denied: ${echo} (try again)`);
      expect(text, echo).toBe('denied: [redacted] (try again)');
    }
  });

  it('leaves the words of an output alone: a short password, or a colon in another kind', () => {
    const text = 'Keep your secret key secure. Docs: https://example.com/secret';
    for (const [secret, kind] of [
      ['svcuser:secret', 'basic'],
      ['token:secret-and-more', 'bearer_token'],
    ] as const) {
      const guard = createOutputGuard({
        secrets: () => secretForms(secret, kind),
        allowedLinkHosts: [],
      });
      expect(guard.redact(text).text).toBe(text);
    }
  });
});
