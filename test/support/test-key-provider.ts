import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { CreateKeyProviderV1, KeyProviderV1 } from '../../src/plugin-api/index.ts';

/**
 * A key-provider plugin for tests, loaded by Brigade through `vault.keyProvider` like a real
 * KMS client: a key ring (`options.keys`: id → base64 of 32 bytes) wrapping with
 * `options.current`. `options.fail` makes it throw, with a message carrying
 * `options.secretInMessage`, at `create`, `wrap` or `unwrap`; `options.wrongUnwrap` returns a
 * wrong key. Every wrap and unwrap is counted in {@link testKeyProviderCalls}.
 */
export const createKeyProvider: CreateKeyProviderV1 = ({ options }) => {
  const ring = options['keys'] as Record<string, string>;
  const current = options['current'] as string;
  const fail = options['fail'] as 'create' | 'wrap' | 'unwrap' | undefined;
  const secret = String(options['secretInMessage'] ?? 'no-secret');
  const boom = () => {
    const error = new Error(`KMS said no; credentials were ${secret}`) as Error & { code: string };
    error.code = 'AccessDenied';
    return error;
  };
  if (fail === 'create') throw boom();
  const keyOf = (id: string) => {
    const encoded = ring[id];
    if (encoded === undefined) throw new Error(`unknown key ${id}`);
    return Buffer.from(encoded, 'base64');
  };
  const provider: KeyProviderV1 = {
    specificationVersion: 'key-provider-v1',
    id: 'test-kms',
    async wrapKey({ plaintext, context }) {
      testKeyProviderCalls.wrap += 1;
      if (fail === 'wrap') throw boom();
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', keyOf(current), iv);
      cipher.setAAD(Buffer.from(context));
      const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return {
        wrapped: new Uint8Array(Buffer.concat([iv, cipher.getAuthTag(), body])),
        keyId: `test-kms/${current}`,
      };
    },
    async unwrapKey({ wrapped, keyId, context }) {
      testKeyProviderCalls.unwrap += 1;
      if (fail === 'unwrap') throw boom();
      if (options['wrongUnwrap'] === true) return new Uint8Array(32);
      const bytes = Buffer.from(wrapped);
      const decipher = createDecipheriv(
        'aes-256-gcm',
        keyOf(keyId.replace(/^test-kms\//, '')),
        bytes.subarray(0, 12),
      );
      decipher.setAAD(Buffer.from(context));
      decipher.setAuthTag(bytes.subarray(12, 28));
      return new Uint8Array(Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]));
    },
  };
  return provider;
};

/** How often test providers (of this module instance) wrapped and unwrapped. */
export const testKeyProviderCalls = { wrap: 0, unwrap: 0 };
