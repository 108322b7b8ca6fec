import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** A 32-byte AES-256 key with a short public id (a fingerprint: it reveals nothing usable). */
export interface VaultKey {
  readonly id: string;
  readonly key: Buffer;
}

/** The master keys of this process: the current one, and the previous one during rotation. */
export interface MasterKeys {
  readonly current: VaultKey;
  readonly previous: VaultKey | undefined;
}

const ivBytes = 12;
const tagBytes = 16;

/** The id of a key: the first 16 hex characters of SHA-256 over a domain label and the key. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update('brigade-vault-key\0').update(key).digest('hex').slice(0, 16);
}

/** Parses a base64 master key (32 bytes); throws a message that never repeats the value. */
export function parseMasterKey(base64: string): VaultKey {
  const trimmed = base64.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed))
    throw new Error('the master key must be base64 of 32 random bytes');
  const key = Buffer.from(trimmed, 'base64');
  if (key.length !== 32) throw new Error('the master key must be base64 of 32 random bytes');
  return { id: keyId(key), key };
}

/** A new random data key. */
export function generateDataKey(): Buffer {
  return randomBytes(32);
}

/**
 * Encrypts `plaintext` with AES-256-GCM under `key`, bound to `context` as additional
 * authenticated data: a ciphertext moved to another row (another tenant, user or credential)
 * fails to decrypt. Layout: iv (12) ‖ tag (16) ‖ ciphertext.
 */
export function seal(key: Buffer, plaintext: Buffer, context: string): Buffer {
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), body]);
}

/** Decrypts what {@link seal} produced; throws when the key, the context or a byte is wrong. */
export function open(key: Buffer, sealed: Buffer, context: string): Buffer {
  if (sealed.length < ivBytes + tagBytes) throw new Error('sealed value too short');
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, ivBytes));
  decipher.setAAD(Buffer.from(context, 'utf8'));
  decipher.setAuthTag(sealed.subarray(ivBytes, ivBytes + tagBytes));
  return Buffer.concat([decipher.update(sealed.subarray(ivBytes + tagBytes)), decipher.final()]);
}

/** The AAD of a tenant data key. */
export const tenantKeyContext = (tenantId: string) => `tenant-key:${tenantId}`;
/** The AAD of a user data key. */
export const userKeyContext = (tenantId: string, userId: string) =>
  `user-key:${tenantId}:${userId}`;
/** The AAD of a credential's secret. */
export const credentialContext = (tenantId: string, credentialId: string) =>
  `credential:${tenantId}:${credentialId}`;

/** The master key that wrapped a stored key, by id; throws when this process has neither. */
export function masterKeyFor(keys: MasterKeys, id: string): VaultKey {
  if (keys.current.id === id) return keys.current;
  if (keys.previous?.id === id) return keys.previous;
  throw new Error(
    `a tenant data key is wrapped by master key ${id}, which is neither BRIGADE_MASTER_KEY nor BRIGADE_MASTER_KEY_PREVIOUS`,
  );
}

/**
 * What a listing may show of a secret: a SHA-256 fingerprint (12 hex characters) and its last
 * four characters when it is long enough that they reveal little (at least 16), else none.
 */
export function describeSecret(secret: string): { fingerprint: string; last4: string } {
  return {
    fingerprint: createHash('sha256').update(secret).digest('hex').slice(0, 12),
    last4: secret.length >= 16 ? secret.slice(-4) : '',
  };
}
