import { createHash, createHmac, hkdfSync } from 'node:crypto';

/**
 * The prefix of a keyed arguments hash: `hmac-sha256:` and 64 lower-case hex digits. A hash
 * without it is the plain SHA-256 (64 hex digits) written before hashes were keyed, or by a
 * server that has no vault key.
 */
export const keyedArgumentsHashPrefix = 'hmac-sha256:';

/** How an arguments hash was made, read from its form (see {@link argumentsHashScheme}). */
export type ArgumentsHashScheme = 'hmac-sha256' | 'sha256';

/** The HKDF `info` label of the arguments-hash key: a purpose of its own, versioned. */
const hashKeyLabel = 'brigade arguments-hash key v1';

const plainPattern = /^[0-9a-f]{64}$/;
const keyedPattern = /^hmac-sha256:[0-9a-f]{64}$/;

/**
 * The per-tenant key of {@link keyedArgumentsHash}: HKDF-SHA-256 over the tenant's vault data
 * key, with a purpose label and the tenant id as `info`, 32 bytes. The data key itself never
 * hashes anything (it wraps user keys and encrypts shared credentials); this key is derived
 * for hashing only, so neither use can stand in for the other. Never log or store it.
 */
export function deriveArgumentsHashKey(tenantDataKey: Buffer, tenantId: string): Buffer {
  if (tenantDataKey.length !== 32) throw new Error('a tenant data key is 32 bytes');
  return Buffer.from(
    hkdfSync('sha256', tenantDataKey, Buffer.alloc(0), `${hashKeyLabel}\0${tenantId}`, 32),
  );
}

/**
 * The keyed hash of a tool call's arguments: `hmac-sha256:` and the HMAC-SHA-256, under the
 * tenant's key from {@link deriveArgumentsHashKey}, of their canonical JSON. Equal arguments
 * in one tenant give equal hashes (an approval binds to the exact call; audit events of the
 * same call correlate); without the key nobody can confirm a guess of the arguments by hashing
 * it, and hashes of different tenants are unrelated.
 */
export function keyedArgumentsHash(key: Buffer, value: unknown): string {
  const mac = createHmac('sha256', key).update(canonicalJson(value)).digest('hex');
  return `${keyedArgumentsHashPrefix}${mac}`;
}

/**
 * The plain SHA-256 of the canonical JSON of tool arguments (64 hex digits): the form every
 * hash had before they were keyed, still written by a server without a vault key. Anyone can
 * compute it, so it confirms guessed arguments: use it only where no key exists, or to check
 * a hash the caller may see the arguments of anyway.
 */
export function plainArgumentsHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

/** The scheme of a stored or presented arguments hash; undefined when it has neither form. */
export function argumentsHashScheme(hash: string): ArgumentsHashScheme | undefined {
  if (keyedPattern.test(hash)) return 'hmac-sha256';
  if (plainPattern.test(hash)) return 'sha256';
  return undefined;
}

/**
 * JSON with object keys sorted (by UTF-16 code unit), no whitespace: equal values give equal
 * text whatever the order their keys were written in.
 */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([left], [right]) =>
      left < right ? -1 : 1,
    );
    return `{${entries.map(([key, inner]) => `${JSON.stringify(key)}:${canonicalJson(inner)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
