import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './index.ts';

/** Secrets from the environment are checked with the rest of the configuration, not echoed. */
describe('secret environment variables', () => {
  it('rejects malformed master and audit signing keys before anything starts', () => {
    const masterKey = 'x'.repeat(44);
    const signingKey = 'not-a-pkcs8-key-'.repeat(4);
    const env = {
      BRIGADE_MASTER_KEY: masterKey,
      BRIGADE_MASTER_KEY_PREVIOUS: Buffer.alloc(31).toString('base64'),
      BRIGADE_AUDIT_SIGNING_KEY: signingKey,
    };
    let error: unknown;
    try {
      loadConfig({ env, file: {} });
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const issues = (error as ConfigError).issues;
    expect(issues.map((issue) => issue.path).sort()).toEqual([
      'env.BRIGADE_AUDIT_SIGNING_KEY',
      'env.BRIGADE_MASTER_KEY',
      'env.BRIGADE_MASTER_KEY_PREVIOUS',
    ]);
    const text = `${(error as Error).message} ${JSON.stringify(issues)}`;
    expect(text).not.toContain(masterKey);
    expect(text).not.toContain(signingKey);
  });

  it('accepts base64 of 32 bytes as the master key', () => {
    const valid = Buffer.alloc(32, 7).toString('base64');
    expect(loadConfig({ env: { BRIGADE_MASTER_KEY: valid }, file: {} }).vault.masterKey).toBe(
      valid,
    );
  });
});
