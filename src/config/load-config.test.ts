import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, type ConfigIssue, loadConfig } from './index.ts';

/** A directory without a `brigade.config.json`, so only defaults and the given env apply. */
let emptyDir: string;
/** A directory holding config files the tests write. */
let fileDir: string;

beforeAll(() => {
  emptyDir = mkdtempSync(join(tmpdir(), 'brigade-config-empty-'));
  fileDir = mkdtempSync(join(tmpdir(), 'brigade-config-files-'));
});

afterAll(() => {
  rmSync(emptyDir, { recursive: true, force: true });
  rmSync(fileDir, { recursive: true, force: true });
});

/** Runs `load` and returns the {@link ConfigError} it throws; fails the test if it does not. */
function configErrorOf(load: () => unknown): ConfigError {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError, but the configuration loaded');
}

const pathsOf = (issues: readonly ConfigIssue[]) => issues.map((issue) => issue.path).sort();

const topLevelKeys = [
  '$schema',
  'server',
  'database',
  'auth',
  'runs',
  'models',
  'providers',
  'tools',
  'log',
];

describe('loadConfig defaults', () => {
  it('uses documented defaults and the embedded database when there is no file and no env', () => {
    const config = loadConfig({ env: {}, cwd: emptyDir });
    expect(config.server).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      bodyLimitBytes: 1024 * 1024,
      shutdownGraceMs: 10_000,
      requestTimeoutMs: 30_000,
      cors: { origins: [], credentials: false, maxAgeSeconds: 600 },
    });
    expect(config.database).toMatchObject({
      runtimeRole: 'brigade_app',
      poolSize: 10,
      statementTimeoutMs: 30_000,
      migrateOnStart: true,
      mode: { kind: 'embedded', dataDir: join(emptyDir, '.brigade/postgres'), port: undefined },
    });
    expect(config.database).not.toHaveProperty('embedded');
    expect(config.auth).toEqual({
      keyLastUsedWriteIntervalMs: 60_000,
      jwksCacheMs: 600_000,
      jwtClockToleranceSeconds: 30,
      jwksAllowPrivateNetworks: false,
    });
    expect(config.runs).toEqual({
      concurrency: 64,
      pollIntervalMs: 250,
      staleAfterMs: 10_000,
      maxConcurrentPerTenant: 32,
      maxConcurrentPerUser: 8,
      maxQueuedPerTenant: 1_000,
      approvalTtlSeconds: 86_400,
      approvalSweepMs: 10_000,
    });
    expect(config.memory).toEqual({ maxEntriesPerUser: 1_000 });
    expect(config.retention).toEqual({
      sweepMs: 30_000,
      reservationDays: 30,
      limitCounterDays: 100,
      webhookDeliveryDays: 30,
    });
    expect(config.log).toEqual({ level: 'info' });
    expect(config.providers).toEqual({});
    expect(config.redisUrl).toBeUndefined();
    expect(config.operatorKey).toBeUndefined();
    expect(config.configPath).toBeUndefined();
  });

  it('lets the environment override host, port and log level', () => {
    const config = loadConfig({
      file: { server: { port: 9000 }, log: { level: 'debug' } },
      env: { BRIGADE_HOST: '0.0.0.0', BRIGADE_PORT: '7070', LOG_LEVEL: 'warn' },
      cwd: emptyDir,
    });
    expect(config.server.host).toBe('0.0.0.0');
    expect(config.server.port).toBe(7070);
    expect(config.log.level).toBe('warn');
  });
});

describe('loadConfig validation', () => {
  it('reports every invalid and unknown key of the file at once, each with its path', () => {
    const error = configErrorOf(() =>
      loadConfig({
        file: {
          server: { port: -1, colour: 'red' },
          log: { level: 'loud' },
          database: { runtimeRole: 'Bad-Name' },
        },
        env: {},
        cwd: emptyDir,
      }),
    );
    expect(pathsOf(error.issues)).toEqual([
      'database.runtimeRole',
      'log.level',
      'server.colour',
      'server.port',
    ]);
    expect(error.issues.find((issue) => issue.path === 'server.colour')?.message).toBe(
      'unknown key',
    );
    expect(error.issues.find((issue) => issue.path === 'database.runtimeRole')?.message).toBe(
      'must be a lower-case SQL identifier',
    );
    for (const path of ['server.port', 'log.level', 'server.colour', 'database.runtimeRole']) {
      expect(error.message).toContain(`- ${path}: `);
    }
  });

  it('says why a name of a provider or stdio server is refused, not only that it is', () => {
    const providers = { 'Open AI': { type: 'openai' } };
    const tools = { mcpStdio: { servers: { Files: { command: 'files' } } } };
    const error = configErrorOf(() => loadConfig({ file: { providers, tools }, env: {} }));
    expect(error.issues.map(({ path, message }) => `${path}: ${message}`)).toEqual([
      'providers.Open AI: invalid name: a lower-case letter, then lower-case letters, digits, -',
      'tools.mcpStdio.servers.Files: invalid name: a lower-case letter, then a-z, 0-9, _ or -',
    ]);
  });

  it('accepts 0 (unlimited) for the run caps and queue limit, and rejects negative ones', () => {
    const unlimited = loadConfig({
      file: { runs: { maxConcurrentPerTenant: 0, maxConcurrentPerUser: 0, maxQueuedPerTenant: 0 } },
      env: {},
      cwd: emptyDir,
    });
    expect(unlimited.runs).toMatchObject({
      maxConcurrentPerTenant: 0,
      maxConcurrentPerUser: 0,
      maxQueuedPerTenant: 0,
    });
    const error = configErrorOf(() =>
      loadConfig({
        file: {
          runs: { maxConcurrentPerTenant: -1, maxConcurrentPerUser: 1.5, maxQueuedPerTenant: -5 },
        },
        env: {},
        cwd: emptyDir,
      }),
    );
    expect(pathsOf(error.issues)).toEqual([
      'runs.maxConcurrentPerTenant',
      'runs.maxConcurrentPerUser',
      'runs.maxQueuedPerTenant',
    ]);
  });

  it('reports invalid environment variables under env.* together with file problems', () => {
    const error = configErrorOf(() =>
      loadConfig({
        file: { log: { level: 'loud' } },
        env: { BRIGADE_PORT: 'abc', DATABASE_URL: 'mysql://x' },
        cwd: emptyDir,
      }),
    );
    expect(pathsOf(error.issues)).toEqual(['env.BRIGADE_PORT', 'env.DATABASE_URL', 'log.level']);
    expect(error.issues.find((issue) => issue.path === 'env.DATABASE_URL')?.message).toBe(
      'must be a postgres:// URL',
    );
  });

  it('rejects out-of-range ports, short operator keys and unknown log levels from env', () => {
    const error = configErrorOf(() =>
      loadConfig({
        env: {
          BRIGADE_PORT: '70000',
          BRIGADE_OPERATOR_KEY: 'short',
          LOG_LEVEL: 'chatty',
          REDIS_URL: 'http://cache',
        },
        cwd: emptyDir,
      }),
    );
    expect(pathsOf(error.issues)).toEqual([
      'env.BRIGADE_OPERATOR_KEY',
      'env.BRIGADE_PORT',
      'env.LOG_LEVEL',
      'env.REDIS_URL',
    ]);
  });

  /**
   * Known finding, reported with a proposed fix: `z.coerce.number()` turns an empty or blank
   * BRIGADE_PORT (`BRIGADE_PORT=` in a compose file) into 0, so the server silently listens on
   * a random port; `0x50` and `1e3` are accepted too. `it.fails` keeps the suite green until
   * it is fixed; turn it into `it` then.
   */
  it('rejects a blank or non-decimal BRIGADE_PORT instead of picking a random port', () => {
    for (const port of ['', ' ', '0x50', '1e3']) {
      const error = configErrorOf(() => loadConfig({ env: { BRIGADE_PORT: port }, cwd: emptyDir }));
      expect(pathsOf(error.issues)).toEqual(['env.BRIGADE_PORT']);
    }
  });

  it('names the environment variable a provider needs when it is not set', () => {
    const error = configErrorOf(() =>
      loadConfig({
        file: {
          providers: {
            openai: { type: 'openai', apiKeyEnv: 'OPENAI_API_KEY' },
            vllm: { type: 'openai-compatible' },
          },
        },
        env: {},
        cwd: emptyDir,
      }),
    );
    expect(pathsOf(error.issues)).toEqual(['env.OPENAI_API_KEY', 'providers.vllm.baseUrl']);
  });

  it('resolves a provider API key from the environment without keeping the variable name', () => {
    const config = loadConfig({
      file: { providers: { openai: { type: 'openai', apiKeyEnv: 'OPENAI_API_KEY' } } },
      env: { OPENAI_API_KEY: 'sk-test' },
      cwd: emptyDir,
    });
    expect(config.providers['openai']).toEqual({ type: 'openai', apiKey: 'sk-test' });
  });
});

describe('loadConfig database mode', () => {
  it('selects the external server when DATABASE_URL is set', () => {
    const config = loadConfig({
      env: { DATABASE_URL: 'postgres://brigade:pw@db.internal:5432/brigade' },
      cwd: emptyDir,
    });
    expect(config.database.mode).toEqual({
      kind: 'external',
      ownerUrl: 'postgres://brigade:pw@db.internal:5432/brigade',
      runtimeUrl: undefined,
    });
  });

  it('uses DATABASE_RUNTIME_URL for the runtime pool, but only together with DATABASE_URL', () => {
    const config = loadConfig({
      env: {
        DATABASE_URL: 'postgresql://owner@db/brigade',
        DATABASE_RUNTIME_URL: 'postgresql://app@db/brigade',
      },
      cwd: emptyDir,
    });
    expect(config.database.mode).toMatchObject({
      kind: 'external',
      runtimeUrl: 'postgresql://app@db/brigade',
    });
    const error = configErrorOf(() =>
      loadConfig({ env: { DATABASE_RUNTIME_URL: 'postgres://app@db/brigade' }, cwd: emptyDir }),
    );
    expect(pathsOf(error.issues)).toEqual(['env.DATABASE_RUNTIME_URL']);
  });

  it('resolves the embedded data directory against the working directory', () => {
    const config = loadConfig({
      file: { database: { embedded: { dataDir: 'data/pg', port: 6543 } } },
      env: {},
      cwd: emptyDir,
    });
    expect(config.database.mode).toEqual({
      kind: 'embedded',
      dataDir: join(emptyDir, 'data/pg'),
      port: 6543,
    });
  });
});

describe('loadConfig files', () => {
  it('reads an explicit config file relative to the working directory', () => {
    writeFileSync(join(fileDir, 'good.json'), JSON.stringify({ server: { port: 1234 } }));
    const config = loadConfig({ configPath: 'good.json', env: {}, cwd: fileDir });
    expect(config.server.port).toBe(1234);
    expect(config.configPath).toBe(join(fileDir, 'good.json'));
  });

  it('reads brigade.config.json from the working directory when no path is given', () => {
    const dir = mkdtempSync(join(tmpdir(), 'brigade-config-default-'));
    try {
      writeFileSync(join(dir, 'brigade.config.json'), JSON.stringify({ log: { level: 'warn' } }));
      const config = loadConfig({ env: {}, cwd: dir });
      expect(config.log.level).toBe('warn');
      expect(config.configPath).toBe(join(dir, 'brigade.config.json'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails clearly when an explicit config file is missing', () => {
    const error = configErrorOf(() =>
      loadConfig({ configPath: 'missing.json', env: {}, cwd: fileDir }),
    );
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]?.path).toBe(join(fileDir, 'missing.json'));
    expect(error.issues[0]?.message).toMatch(/^cannot read config file \(.*ENOENT/);
  });

  it('treats BRIGADE_CONFIG like an explicit path, so a missing file is an error', () => {
    const error = configErrorOf(() =>
      loadConfig({ env: { BRIGADE_CONFIG: 'also-missing.json' }, cwd: fileDir }),
    );
    expect(error.issues[0]?.path).toBe(join(fileDir, 'also-missing.json'));
  });

  it('fails clearly when the config file is not valid JSON', () => {
    writeFileSync(join(fileDir, 'broken.json'), '{"server": {"port": 80,}');
    const error = configErrorOf(() =>
      loadConfig({ configPath: 'broken.json', env: {}, cwd: fileDir }),
    );
    expect(error.issues).toHaveLength(1);
    expect(error.issues[0]?.path).toBe(join(fileDir, 'broken.json'));
    expect(error.issues[0]?.message).toMatch(/^not valid JSON: /);
    expect(error.message.split('\n')[0]).toBe('invalid configuration:');
  });
});

describe('loadConfig result', () => {
  it('returns a deeply frozen configuration', () => {
    const config = loadConfig({
      file: {
        server: { cors: { origins: ['https://app.test'] } },
        providers: { openai: { type: 'openai', headers: { 'x-team': 'a' } } },
      },
      env: {},
      cwd: emptyDir,
    });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.server)).toBe(true);
    expect(Object.isFrozen(config.server.cors.origins)).toBe(true);
    expect(Object.isFrozen(config.database.mode)).toBe(true);
    expect(Object.isFrozen(config.providers['openai']?.headers)).toBe(true);
    expect(() => {
      (config.server as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => {
      (config.server.cors.origins as string[]).push('https://evil.test');
    }).toThrow(TypeError);
    expect(config.server.port).toBe(8080);
  });

  it('does not freeze or change the file object it was given', () => {
    const file = { server: { port: 4321 } };
    loadConfig({ file, env: {}, cwd: emptyDir });
    expect(Object.isFrozen(file)).toBe(false);
    expect(Object.isFrozen(file.server)).toBe(false);
    expect(file).toEqual({ server: { port: 4321 } });
  });
});

describe('loadConfig properties', () => {
  it('always rejects unknown top-level keys, naming each of them', () => {
    // Several unknown keys of one object currently share one issue whose path is "a, b", so
    // keys containing a comma are left out: they could not be told apart in that path.
    const unknownKey = fc
      .oneof(
        fc.constantFrom('__proto__', 'constructor', 'toString', 'Server', 'server ', 'log.level'),
        fc.string({ minLength: 1, maxLength: 20 }),
      )
      .filter((key) => !topLevelKeys.includes(key) && !key.includes(','));
    fc.assert(
      fc.property(
        fc.uniqueArray(unknownKey, { minLength: 1, maxLength: 5 }),
        fc.jsonValue(),
        (keys, value) => {
          const file: Record<string, unknown> = { log: { level: 'warn' } };
          for (const key of keys) Object.defineProperty(file, key, { value, enumerable: true });
          const error = configErrorOf(() => loadConfig({ file, env: {}, cwd: emptyDir }));
          const named = error.issues
            .filter((issue) => issue.message === 'unknown key')
            .flatMap((issue) => issue.path.split(', '));
          expect(new Set(named)).toEqual(new Set(keys));
          expect(error.issues.every((issue) => issue.message === 'unknown key')).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});
