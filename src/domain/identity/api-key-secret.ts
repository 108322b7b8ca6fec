import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Prefix of every user API key secret. */
export const apiKeyPrefix = 'brg_';
/** Prefix of operator keys Brigade generates. */
export const operatorKeyPrefix = 'brg_op_';

/** SHA-256 of a presented secret; only this is ever stored. */
export function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** A new secret (32 random bytes, base64url) with the given prefix, and its display prefix. */
export function generateSecret(prefix: string): { secret: string; displayPrefix: string } {
  const secret = `${prefix}${randomBytes(32).toString('base64url')}`;
  return { secret, displayPrefix: secret.slice(0, prefix.length + 8) };
}

/** Constant-time comparison of two hashes. */
export function hashesEqual(left: Buffer, right: Buffer): boolean {
  return left.length === right.length && timingSafeEqual(left, right);
}

/** True when `token` has the shape of a Brigade user API key. */
export function looksLikeApiKey(token: string): boolean {
  return /^brg_[A-Za-z0-9_-]{43}$/.test(token);
}
