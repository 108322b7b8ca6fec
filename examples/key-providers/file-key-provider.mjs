// An example key-provider plugin for Brigade (KeyProviderV1, src/plugin-api/key-provider-v1.ts).
//
// It keeps a key ring in a JSON file outside the database and outside Brigade's environment:
//   { "current": "2025-06", "keys": { "2025-05": "<base64 of 32 bytes>", "2025-06": "<base64>" } }
// and wraps tenant data keys with AES-256-GCM under the current key, bound to the context.
// A KMS provider has the same shape: wrapKey calls the KMS's Encrypt (with the context as its
// encryption context), unwrapKey its Decrypt, and the key never leaves the KMS.
//
// brigade.config.json:
//   "vault": { "keyProvider": { "module": "./examples/key-providers/file-key-provider.mjs",
//                               "options": { "keyRingFile": "/etc/brigade/key-ring.json" } } }
// Rotation: add a key to the ring, make it "current", restart, run `brigade keys rotate-master`,
// then remove the old key.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

/** @param {{ options: Record<string, unknown> }} input */
export function createKeyProvider({ options }) {
  const file = options.keyRingFile;
  if (typeof file !== 'string') throw new Error('options.keyRingFile is required');
  if ((statSync(file).mode & 0o077) !== 0) throw new Error(`${file} must not be readable by others (chmod 600)`);
  const ring = JSON.parse(readFileSync(file, 'utf8'));
  const keys = new Map(
    Object.entries(ring.keys ?? {}).map(([id, encoded]) => [id, Buffer.from(String(encoded), 'base64')]),
  );
  for (const [id, key] of keys)
    if (key.length !== 32) throw new Error(`key ${id} is not base64 of 32 bytes`);
  if (!keys.has(ring.current)) throw new Error('"current" names no key of the ring');
  const keyOf = (id) => {
    const key = keys.get(id);
    if (key === undefined) throw new Error(`no key ${id} in the key ring`);
    return key;
  };
  return {
    specificationVersion: 'key-provider-v1',
    id: 'file-key-ring',
    async wrapKey({ plaintext, context }) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', keyOf(ring.current), iv);
      cipher.setAAD(Buffer.from(context, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return { wrapped: Buffer.concat([iv, cipher.getAuthTag(), body]), keyId: `file:${ring.current}` };
    },
    async unwrapKey({ wrapped, keyId, context }) {
      const bytes = Buffer.from(wrapped);
      const decipher = createDecipheriv('aes-256-gcm', keyOf(keyId.replace(/^file:/, '')), bytes.subarray(0, 12));
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(bytes.subarray(12, 28));
      return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]);
    },
  };
}
