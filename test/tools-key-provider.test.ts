import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { loadConfig } from '../src/config/index.ts';
import { type Brigade, createBrigade } from '../src/main.ts';
import { createLogger } from '../src/observability/index.ts';
import { loadVaultKeySource } from '../src/storage/vault-key-provider.ts';
import { apiClient, type Created, seedTenant, seedUser } from './support/api-client.ts';
import { createTestDatabase, type TestDatabase, testOperatorKey } from './support/test-brigade.ts';
import { newMasterKey, runOnce, startUpstream } from './support/tool-fixtures.ts';

const providerModule = resolve(import.meta.dirname, 'support/test-key-provider.ts');
const exampleModule = resolve(
  import.meta.dirname,
  '../examples/key-providers/file-key-provider.mjs',
);
const ring = { k1: newMasterKey(), k2: newMasterKey() };
const canary = `canary-kms-${'5'.repeat(24)}`;
const providerSecret = `provider-secret-${'6'.repeat(20)}`;

let database: TestDatabase;
let upstream: Awaited<ReturnType<typeof startUpstream>>;
let workDir: string;
const running: Brigade[] = [];

function vaultFile(options: Record<string, unknown>, module = providerModule) {
  return {
    runs: { pollIntervalMs: 50 },
    tools: { tenantHttp: { allowPrivateNetworks: true } },
    server: { port: 0, shutdownGraceMs: 500 },
    vault: { keyProvider: { module, options } },
  };
}

function configFor(file: Record<string, unknown>, env: Record<string, string> = {}) {
  return loadConfig({
    file,
    env: { DATABASE_URL: database.url, BRIGADE_OPERATOR_KEY: testOperatorKey, ...env },
  });
}

/**
 * Starts Brigade on the shared database; returns its URL. The servers started before it stop
 * first: every server claims queued runs from the shared database, so one left running with
 * other keys could execute the run under test and fail to unwrap the credential.
 */
async function start(file: Record<string, unknown>, env: Record<string, string> = {}) {
  for (const earlier of running.splice(0)) await earlier.stop();
  const brigade = await createBrigade({
    config: configFor(file, env),
    logger: createLogger({ level: 'silent' }),
  });
  running.push(brigade);
  return { brigade, url: await brigade.listen() };
}

/** What starting Brigade with `file` fails with (it must fail). */
async function startFailure(file: Record<string, unknown>, env: Record<string, string> = {}) {
  try {
    const brigade = await createBrigade({
      config: configFor(file, env),
      logger: createLogger({ level: 'silent' }),
    });
    await brigade.stop();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('Brigade started');
}

async function ownerQuery<T extends object>(text: string): Promise<T[]> {
  const owner = new pg.Client({ connectionString: database.url });
  await owner.connect();
  try {
    return (await owner.query<T>(text)).rows;
  } finally {
    await owner.end();
  }
}

/** Sets up a tenant, a user with the canary credential and an agent with a tool that uses it. */
async function seedWorld(url: string, label: string) {
  const operator = apiClient(url, testOperatorKey);
  const tenantId = await seedTenant(operator, label);
  const admin = apiClient(url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  const aliceSecret = (await seedUser(operator, { tenantId, role: 'member' })).secret;
  const alice = apiClient(url, aliceSecret);
  const tool = await admin.post('/v1/tools', {
    name: 'whoami',
    description: 'Asks the service who the caller is.',
    risk: 'read',
    method: 'GET',
    urlTemplate: `${upstream.url}/whoami`,
    inputSchema: { type: 'object', properties: {}, additionalProperties: false },
    auth: { credential: 'svc', scheme: 'bearer' },
  });
  expect(tool.status, JSON.stringify(tool.body)).toBe(201);
  const agent = await admin.post<Created>('/v1/agents', { name: 'kms', tools: ['whoami'] });
  expect(agent.status, JSON.stringify(agent.body)).toBe(201);
  const put = await alice.post('/v1/me/credentials', { name: 'svc', secret: canary });
  expect(put.status, JSON.stringify(put.body)).toBe(201);
  return { tenantId, aliceSecret, agentId: agent.body.id };
}

/** Runs the tool as `alice` on the server at `url`; returns the Authorization the upstream saw. */
async function callWith(world: { aliceSecret: string; agentId: string }, url: string) {
  const alice = apiClient(url, world.aliceSecret);
  const before = upstream.requests.length;
  const result = await runOnce(alice, { agentId: world.agentId, input: 'call whoami {}' });
  expect(result.run.status).toBe('completed');
  expect(upstream.requests.length).toBe(before + 1);
  return upstream.requests.at(-1)?.headers.authorization;
}

/** The arguments hashes of a tenant's `tool.called` events, read as the operator. */
async function toolCallHashes(url: string, tenantId: string): Promise<unknown[]> {
  const log = await apiClient(url, testOperatorKey).get<{
    data: { action: string; data: Record<string, unknown> }[];
  }>(`/v1/tenants/${tenantId}/audit-events?limit=500`);
  expect(log.status).toBe(200);
  return log.body.data
    .filter((event) => event.action === 'tool.called')
    .map((event) => event.data['argumentsHash']);
}

async function rotateWithCli(file: Record<string, unknown>, env: Record<string, string> = {}) {
  const configPath = join(workDir, `config-${randomBytes(4).toString('hex')}.json`);
  await writeFile(configPath, JSON.stringify(file));
  const out: string[] = [];
  const status = await runCli(
    ['keys', 'rotate-master', '--config', configPath],
    { out: (line) => out.push(line), err: (line) => out.push(line) },
    { DATABASE_URL: database.url, LOG_LEVEL: 'silent', ...env },
  );
  return { status, output: out.join('\n') };
}

beforeAll(async () => {
  database = await createTestDatabase();
  upstream = await startUpstream();
  workDir = await mkdtemp(join(tmpdir(), 'brigade-kms-'));
}, 60_000);

afterAll(async () => {
  for (const brigade of running) await brigade.stop().catch(() => undefined);
  await upstream?.close();
  await database?.drop();
  await rm(workDir, { recursive: true, force: true });
});

describe('a key-provider plugin', () => {
  let world: Awaited<ReturnType<typeof seedWorld>>;

  it('wraps tenant keys: credentials are stored and used through the plugin', async () => {
    const first = await start(vaultFile({ keys: { k1: ring.k1 }, current: 'k1' }));
    world = await seedWorld(first.url, 'kms');
    expect(await callWith(world, first.url)).toBe(`Bearer ${canary}`);
    const rows = await ownerQuery<{ master_key_id: string; wrapped_key: Buffer }>(
      'select master_key_id, wrapped_key from brigade.vault_tenant_keys',
    );
    expect(rows.map((row) => row.master_key_id)).toEqual(['test-kms/k1']);
  }, 60_000);

  it('rotates: a new current key reads old rows, rotate-master re-wraps, the old key can go', async () => {
    const both = vaultFile({ keys: { k1: ring.k1, k2: ring.k2 }, current: 'k2' });
    const second = await start(both);
    expect(await callWith(world, second.url)).toBe(`Bearer ${canary}`);
    const hashBefore = await toolCallHashes(second.url, world.tenantId);
    const rotated = await rotateWithCli(both);
    expect(rotated.status, rotated.output).toBe(0);
    expect(rotated.output).toBe('re-wrapped 1 of 1 tenant data keys with master key test-kms/k2');
    const third = await start(vaultFile({ keys: { k2: ring.k2 }, current: 'k2' }));
    expect(await callWith(world, third.url)).toBe(`Bearer ${canary}`);
    // The arguments hash is keyed through the plugin's data key, which a rotation re-wraps
    // without changing: the same call hashes the same before and after.
    const hashes = await toolCallHashes(third.url, world.tenantId);
    expect(hashBefore[0]).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(new Set(hashes)).toEqual(new Set([hashBefore[0]]));
    const again = await rotateWithCli(both);
    expect(again.output).toBe('re-wrapped 0 of 1 tenant data keys with master key test-kms/k2');
  }, 90_000);

  it('migrates from BRIGADE_MASTER_KEY: the previous key unwraps old rows until rotate-master', async () => {
    const envKey = newMasterKey();
    const plain = await start(
      { runs: { pollIntervalMs: 50 }, tools: { tenantHttp: { allowPrivateNetworks: true } } },
      { BRIGADE_MASTER_KEY: envKey },
    );
    const envWorld = await seedWorld(plain.url, 'env-to-kms');
    const file = vaultFile({ keys: { k2: ring.k2 }, current: 'k2' });
    const migrating = await start(file, { BRIGADE_MASTER_KEY_PREVIOUS: envKey });
    expect(await callWith(envWorld, migrating.url)).toBe(`Bearer ${canary}`);
    const rotated = await rotateWithCli(file, { BRIGADE_MASTER_KEY_PREVIOUS: envKey });
    expect(rotated.output).toBe('re-wrapped 1 of 2 tenant data keys with master key test-kms/k2');
    const after = await start(file);
    expect(await callWith(envWorld, after.url)).toBe(`Bearer ${canary}`);
  }, 90_000);

  it('refuses to start, in one line without secrets, when the provider fails', async () => {
    const options = { keys: { k1: ring.k1 }, current: 'k1', secretInMessage: providerSecret };
    const cases: [Record<string, unknown>, RegExp][] = [
      [vaultFile({ ...options, fail: 'create' }), /createKeyProvider failed \(Error AccessDenied;/],
      [vaultFile({ ...options, fail: 'wrap' }), /wrapKey failed \(Error AccessDenied;/],
      [vaultFile({ ...options, fail: 'unwrap' }), /unwrapKey failed \(Error AccessDenied;/],
      [vaultFile({ ...options, wrongUnwrap: true }), /unwrapKey did not return the key/],
      [
        vaultFile(options, join(workDir, 'missing-provider.mjs')),
        /missing-provider\.mjs not found/,
      ],
      [
        vaultFile(options, resolve(import.meta.dirname, 'support/api-client.ts')),
        /does not export a function createKeyProvider/,
      ],
    ];
    for (const [file, expected] of cases) {
      const message = await startFailure(file);
      expect(message).toMatch(expected);
      expect(message).toMatch(/^vault\.keyProvider[ :]/);
      expect(message).not.toContain('\n');
      for (const secret of [providerSecret, ring.k1]) expect(message).not.toContain(secret);
    }
    const both = await startFailure(vaultFile(options), { BRIGADE_MASTER_KEY: newMasterKey() });
    expect(both).toMatch(/vault\.keyProvider: BRIGADE_MASTER_KEY is set too/);
    const cli = await rotateWithCli(vaultFile({ ...options, fail: 'unwrap' }));
    expect(cli.status).toBe(1);
    expect(cli.output).toMatch(/^brigade: vault\.keyProvider .*unwrapKey failed/);
    expect(cli.output).not.toContain(providerSecret);
  }, 60_000);
});

describe('the example file key-ring provider', () => {
  it('wraps with the ring’s current key and refuses a ring others can read', async () => {
    const ringFile = join(workDir, 'key-ring.json');
    await writeFile(ringFile, JSON.stringify({ current: '2025-06', keys: { '2025-06': ring.k1 } }));
    await chmod(ringFile, 0o600);
    const vault = {
      masterKey: undefined,
      previousMasterKey: undefined,
      masterKeyFile: undefined,
      keyProvider: { module: exampleModule, options: { keyRingFile: ringFile } },
    };
    const source = await loadVaultKeySource({ vault });
    expect(source).toMatchObject({ keyId: 'file:2025-06', source: 'plugin' });
    await chmod(ringFile, 0o644);
    await expect(loadVaultKeySource({ vault })).rejects.toThrow(
      /createKeyProvider failed \(Error; the provider's message is not shown\)/,
    );
  });
});
