import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { loadConfig } from '../src/config/index.ts';
import { type Brigade, createBrigade } from '../src/main.ts';
import { createLogger } from '../src/observability/index.ts';
import { apiClient, seedTenant } from './support/api-client.ts';
import { createTestDatabase, type TestDatabase, testOperatorKey } from './support/test-brigade.ts';

let database: TestDatabase;
let brigade: Brigade;
let serverUrl: string;

/** Runs the CLI on the test database; returns its exit status and what it printed. */
async function cli(...argv: string[]): Promise<{ status: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await runCli(
    argv,
    { out: (text) => out.push(text), err: (text) => err.push(text) },
    { DATABASE_URL: database.url, LOG_LEVEL: 'silent' },
  );
  return { status, out, err };
}

beforeAll(async () => {
  database = await createTestDatabase();
  const config = loadConfig({
    file: { server: { port: 0, shutdownGraceMs: 1000 } },
    env: { DATABASE_URL: database.url, BRIGADE_OPERATOR_KEY: testOperatorKey, LOG_LEVEL: 'silent' },
  });
  brigade = await createBrigade({ config, logger: createLogger({ level: 'silent' }) });
  serverUrl = await brigade.listen();
});

afterAll(async () => {
  await brigade?.stop();
  await database?.drop();
});

describe('brigade listings', () => {
  it('lists every tenant, past the first page of 100', async () => {
    const operator = apiClient(serverUrl, testOperatorKey);
    for (let batch = 0; batch < 11; batch += 1)
      await Promise.all(
        Array.from({ length: 10 }, (_, index) => seedTenant(operator, `many-${batch}-${index}`)),
      );
    const run = await cli('tenants', 'list', '--json');
    expect(run.err).toEqual([]);
    expect(run.status).toBe(0);
    const slugs = (JSON.parse(run.out.join('\n')) as { slug: string }[]).map((row) => row.slug);
    expect(slugs.filter((slug) => slug.startsWith('many-'))).toHaveLength(110);
    expect(new Set(slugs).size).toBe(slugs.length);
  });
});

describe('brigade usage report --user', () => {
  it('takes an e-mail, as the help says, and names an unknown one', async () => {
    const operator = apiClient(serverUrl, testOperatorKey);
    const tenantId = await seedTenant(operator, 'usage-by-mail');
    const created = await operator.post<{ id: string }>(`/v1/tenants/${tenantId}/users`, {
      email: 'ada@usage.test',
      role: 'member',
    });
    expect(created.status).toBe(201);
    const byMail = await cli(
      'usage',
      'report',
      '--tenant',
      'usage-by-mail',
      '--user',
      'ADA@usage.test',
      '--json',
    );
    expect(byMail.err).toEqual([]);
    expect(byMail.status).toBe(0);
    expect(JSON.parse(byMail.out.join('\n'))).toMatchObject({ totals: { requests: 0 } });
    const unknown = await cli('usage', 'report', '--tenant', 'usage-by-mail', '--user', 'nobody');
    expect(unknown.status).toBe(1);
    expect(unknown.err).toEqual([
      "brigade: user_not_found: no user with e-mail 'nobody' in this tenant",
    ]);
  });
});

describe('flag names in refusals', () => {
  it('names the flag when the service refuses a value, not the API field', async () => {
    const zone = await cli('tenants', 'create', '--slug', 'zoned', '--time-zone', 'US/Pacific-New');
    expect(zone.status).toBe(1);
    expect(zone.err).toEqual([expect.stringMatching(/^brigade: invalid input: --time-zone: /)]);
    await cli('tenants', 'create', '--slug', 'expiring');
    await cli('users', 'create', '--tenant', 'expiring', '--email', 'e@expiring.test');
    const key = ['keys', 'create', '--tenant', 'expiring', '--user', 'e@expiring.test'];
    const past = await cli(...key, '--name', 'old', '--expires-at', '2000-01-01T00:00:00Z');
    expect(past.err).toEqual(['brigade: invalid input: --expires-at: must be in the future']);
  });
});

describe('bad command lines', () => {
  it('refuses an argument no command takes instead of ignoring it', async () => {
    for (const argv of [
      ['tenants', 'create', 'acme'],
      ['serve', '8080'],
    ])
      expect(await cli(...argv)).toEqual({
        status: 2,
        out: [],
        err: [`brigade: unexpected argument '${argv.at(-1)}'; run 'brigade help'`],
      });
    expect((await cli('tenants', 'list', '--colour')).err).toEqual([
      "brigade: unknown option '--colour'; run 'brigade help'",
    ]);
  });
});

describe('brigade mock-model', () => {
  it('exits 2 with one line for a fault it cannot apply, before listening', async () => {
    for (const [fault, message] of [
      ['{"status":"503"}', /^brigade: --fault: status: .*expected number/],
      ['5', /^brigade: --fault: must be an object/],
    ] as const) {
      const run = await cli('mock-model', '--port', '0', '--fault', fault);
      expect(run.status, fault).toBe(2);
      expect(run.out).toEqual([]);
      expect(run.err).toEqual([expect.stringMatching(message)]);
    }
  });
});
