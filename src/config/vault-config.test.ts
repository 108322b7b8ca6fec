import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './index.ts';

/** A directory without a `brigade.config.json`, so only the given file and env apply. */
let emptyDir: string;

beforeAll(() => {
  emptyDir = mkdtempSync(join(tmpdir(), 'brigade-config-vault-'));
});

afterAll(() => {
  rmSync(emptyDir, { recursive: true, force: true });
});

const masterKey = Buffer.alloc(32, 7).toString('base64');

describe('vault.keyProvider', () => {
  it('resolves a relative module against the configuration file and keeps a package name', () => {
    const path = join(emptyDir, 'brigade.config.json');
    writeFileSync(
      path,
      JSON.stringify({ vault: { keyProvider: { module: './kms.mjs', options: { region: 'x' } } } }),
    );
    const config = loadConfig({ configPath: path, env: {}, cwd: '/' });
    expect(config.vault.keyProvider).toEqual({
      module: join(emptyDir, 'kms.mjs'),
      options: { region: 'x' },
    });
    const named = loadConfig({
      file: { vault: { keyProvider: { module: '@acme/brigade-kms' } } },
      env: {},
      cwd: emptyDir,
    });
    expect(named.vault.keyProvider).toEqual({ module: '@acme/brigade-kms', options: {} });
    expect(loadConfig({ file: {}, env: {}, cwd: emptyDir }).vault.keyProvider).toBeUndefined();
  });

  it('refuses a key provider together with BRIGADE_MASTER_KEY, not with the previous key', () => {
    const file = { vault: { keyProvider: { module: '@acme/brigade-kms' } } };
    try {
      loadConfig({ file, env: { BRIGADE_MASTER_KEY: masterKey }, cwd: emptyDir });
      throw new Error('loaded');
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).issues.map((issue) => issue.path)).toEqual([
        'vault.keyProvider',
      ]);
      expect((error as Error).message).not.toContain(masterKey);
    }
    const migrating = loadConfig({
      file,
      env: { BRIGADE_MASTER_KEY_PREVIOUS: masterKey },
      cwd: emptyDir,
    });
    expect(migrating.vault.previousMasterKey).toBe(masterKey);
  });
});

describe('tools.outputGuard.redactPii', () => {
  const redactPii = (value: unknown) =>
    loadConfig({
      file: value === undefined ? {} : { tools: { outputGuard: { redactPii: value } } },
      env: {},
      cwd: emptyDir,
    }).tools.outputGuard.redactPii;

  it('defaults to card numbers and social security numbers', () => {
    expect(redactPii(undefined)).toEqual(['card', 'ssn']);
  });

  it('takes true (every kind), false (none) or a list of kinds', () => {
    expect(redactPii(true)).toEqual(['email', 'phone', 'iban', 'card', 'ssn']);
    expect(redactPii(false)).toEqual([]);
    expect(redactPii(['email', 'iban', 'email'])).toEqual(['email', 'iban']);
    expect(() => redactPii(['passport'])).toThrow(ConfigError);
  });
});
