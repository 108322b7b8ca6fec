import { createHash, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  argumentsHashScheme,
  canonicalJson,
  deriveArgumentsHashKey,
  keyedArgumentsHash,
  plainArgumentsHash,
} from './arguments-hash.ts';

const dataKey = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => Buffer.from(bytes));
const tenantId = fc.uuid();
const argumentsValue = fc.jsonValue({ maxDepth: 3 });

/** The same value with every object's keys in reverse order. */
function reordered(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reordered);
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>)
        .reverse()
        .map(([key, inner]) => [key, reordered(inner)]),
    );
  return value;
}

describe('keyed arguments hash', () => {
  it('is deterministic for one tenant, whatever order the keys were written in', () => {
    fc.assert(
      fc.property(dataKey, tenantId, argumentsValue, (key, tenant, value) => {
        const hash = keyedArgumentsHash(deriveArgumentsHashKey(key, tenant), value);
        expect(hash).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
        expect(argumentsHashScheme(hash)).toBe('hmac-sha256');
        // Derived again (another process, a cache miss): the same hash.
        expect(keyedArgumentsHash(deriveArgumentsHashKey(Buffer.from(key), tenant), value)).toBe(
          hash,
        );
        expect(keyedArgumentsHash(deriveArgumentsHashKey(key, tenant), reordered(value))).toBe(
          hash,
        );
      }),
    );
  });

  it('differs across tenants, for the same arguments', () => {
    const tenants = fc.record({
      keys: fc.tuple(dataKey, dataKey),
      ids: fc.uniqueArray(tenantId, { minLength: 2, maxLength: 2 }),
    });
    fc.assert(
      fc.property(tenants, argumentsValue, ({ keys: [firstKey, secondKey], ids }, value) => {
        const [first = '', second = ''] = ids;
        const ofFirst = keyedArgumentsHash(deriveArgumentsHashKey(firstKey, first), value);
        // Each tenant has its own data key...
        expect(keyedArgumentsHash(deriveArgumentsHashKey(secondKey, second), value)).not.toBe(
          ofFirst,
        );
        // ...and even one data key gives each tenant id its own hash key.
        expect(keyedArgumentsHash(deriveArgumentsHashKey(firstKey, second), value)).not.toBe(
          ofFirst,
        );
      }),
    );
  });

  it('cannot be confirmed by hashing a guess without the key', () => {
    fc.assert(
      fc.property(dataKey, tenantId, argumentsValue, (key, tenant, value) => {
        const hash = keyedArgumentsHash(deriveArgumentsHashKey(key, tenant), value);
        const plain = createHash('sha256').update(canonicalJson(value)).digest('hex');
        expect(plainArgumentsHash(value)).toBe(plain);
        expect(hash).not.toContain(plain);
        // Nor with the data key used directly: the hash key is derived for this purpose only.
        expect(keyedArgumentsHash(key, value)).not.toBe(hash);
      }),
    );
  });

  it('derives a key that is not the data key, and refuses a data key of the wrong size', () => {
    const key = randomBytes(32);
    const derived = deriveArgumentsHashKey(key, '00000000-0000-4000-8000-000000000001');
    expect(derived).toHaveLength(32);
    expect(derived.equals(key)).toBe(false);
    expect(() => deriveArgumentsHashKey(randomBytes(16), 'tenant')).toThrow(/32 bytes/);
  });

  it('tells the schemes apart, and keeps the plain form of hashes stored before', () => {
    expect(plainArgumentsHash({ to: 'alice@example.com' })).toBe(
      createHash('sha256').update('{"to":"alice@example.com"}').digest('hex'),
    );
    expect(argumentsHashScheme('a'.repeat(64))).toBe('sha256');
    expect(argumentsHashScheme(`hmac-sha256:${'a'.repeat(64)}`)).toBe('hmac-sha256');
    expect(argumentsHashScheme('A'.repeat(64))).toBeUndefined();
    expect(argumentsHashScheme(`sha256:${'a'.repeat(64)}`)).toBeUndefined();
  });
});
