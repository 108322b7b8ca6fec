import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli/main.ts';
import { loadConfig } from '../src/config/index.ts';
import { type Brigade, createBrigade } from '../src/main.ts';
import { createLogger } from '../src/observability/index.ts';
import { cachePurgeChannel, runCancelChannel } from '../src/storage/runs/run-rows.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  waitForRun,
} from './support/api-client.ts';
import { rememberFor, remnantsOf, seedClient } from './support/data-rights-fixtures.ts';
import { createTestDatabase, type TestDatabase, testOperatorKey } from './support/test-brigade.ts';

/**
 * `brigade users delete` against a real server on the same database: the CLI erases a user and
 * everything that is theirs (the server then knows no such user and refuses their key), and
 * refuses without `--yes`, for an unknown or malformed user, and for the last active owner,
 * each with one line and a non-zero exit, deleting nothing.
 */
let database: TestDatabase;
let brigade: Brigade;
let operator: ApiClient;
let serverUrl: string;
let tenantId: string;
let agentId: string;

interface CliRun {
  readonly status: number;
  readonly out: string[];
  readonly err: string[];
}

async function cli(argv: readonly string[], env: Record<string, string> = {}): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const status = await runCli(
    argv,
    { out: (text) => out.push(text), err: (text) => err.push(text) },
    { DATABASE_URL: database.url, LOG_LEVEL: 'silent', ...env },
  );
  return { status, out, err };
}

const deleteUser = (user: string, ...more: string[]) =>
  cli(['users', 'delete', '--tenant', 'erasure', '--user', user, ...more]);

/** Asserts one `brigade: ` line on stderr, no stack trace, nothing on stdout. */
function expectOneLineFailure(run: CliRun, status: number, message: RegExp): void {
  expect(run.status, run.err.join('\n')).toBe(status);
  expect(run.out).toEqual([]);
  expect(run.err).toHaveLength(1);
  const line = run.err[0] ?? '';
  expect(line).toMatch(/^brigade: /);
  expect(line).not.toContain('\n');
  expect(line).not.toMatch(/\bat .+:\d+:\d+/);
  expect(line).toMatch(message);
}

const seed = (role: string, email?: string) =>
  seedClient(
    { operator, url: serverUrl },
    { tenantId, role, ...(email === undefined ? {} : { email }) },
  );

/** Runs `work` while listening on a NOTIFY channel; the ids it carried meanwhile. */
async function heardOn<T>(channel: string, work: () => Promise<T>): Promise<[T, Set<string>]> {
  const listener = new pg.Client({ connectionString: database.url });
  await listener.connect();
  const heard = new Set<string>();
  listener.on('notification', (message) => {
    for (const id of (message.payload ?? '').split(',')) heard.add(id);
  });
  await listener.query(`listen ${channel}`);
  try {
    const result = await work();
    // The CLI sends its NOTIFYs before it returns; give the server a moment to deliver them.
    await new Promise((resolve) => setTimeout(resolve, 200));
    return [result, heard];
  } finally {
    await listener.end();
  }
}

/** Asserts the user still exists and their key still authenticates. */
async function expectIntact(user: { userId: string; client: ApiClient }): Promise<void> {
  expect((await user.client.get('/v1/me')).status).toBe(200);
  expect((await remnantsOf(database.url, user.userId))['users']).toBe(1);
}

beforeAll(async () => {
  database = await createTestDatabase();
  const config = loadConfig({
    file: {
      server: { port: 0, shutdownGraceMs: 1000 },
      // Slow enough that a long answer is still being written when the CLI erases its user.
      models: { local: { tokenDelayMs: 5 } },
      runs: { pollIntervalMs: 50 },
    },
    env: { DATABASE_URL: database.url, BRIGADE_OPERATOR_KEY: testOperatorKey, LOG_LEVEL: 'silent' },
  });
  brigade = await createBrigade({ config, logger: createLogger({ level: 'silent' }) });
  serverUrl = await brigade.listen();
  operator = apiClient(serverUrl, testOperatorKey);
  tenantId = await seedTenant(operator, 'erasure');
  const owner = await seed('owner');
  agentId = (await owner.client.post<Created>('/v1/agents', { name: 'helper' })).body.id;
});

afterAll(async () => {
  await brigade?.stop();
  await database?.drop();
});

describe('brigade users delete', () => {
  it('erases a user and everything that is theirs, and tells the servers to drop their cache', async () => {
    const alice = await seed('member');
    const thread = await alice.client.post<Created>('/v1/threads', { title: 'mine' });
    const run = await alice.client.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
      agentId,
      input: 'remember this',
    });
    await waitForRun(alice.client, { threadId: thread.body.id, runId: run.body.id });
    await rememberFor(database.url, { tenantId, userId: alice.userId, value: 'tea' });
    const before = await remnantsOf(database.url, alice.userId);
    expect(before).toMatchObject({ users: 1, threads: 1, messages: 2, runs: 1, memories: 1 });

    const [deleted, purged] = await heardOn(cachePurgeChannel, () =>
      deleteUser(alice.userId, '--yes', '--reason', 'ticket 42', '--json'),
    );
    expect(deleted.err).toEqual([]);
    expect(deleted.status).toBe(0);
    expect(JSON.parse(deleted.out.join('\n'))).toEqual({
      tenantId,
      userId: alice.userId,
      email: null,
      status: 'deleted',
    });
    // Once before the erasure, once after (for answers stored by calls in flight meanwhile).
    expect(purged).toEqual(new Set([`${tenantId}/${alice.userId}/`, `${tenantId}/shared/`]));
    expect((await alice.client.get('/v1/me')).status).toBe(401);
    const gone = await operator.get<{ code: string }>(
      `/v1/tenants/${tenantId}/users/${alice.userId}`,
    );
    expect(gone.status).toBe(404);
    const after = await remnantsOf(database.url, alice.userId);
    // The bill is kept (ids and numbers, no content); everything else of theirs is gone.
    const { usage_records: kept, ...rest } = after;
    expect(kept).toBe(before['usage_records']);
    expect(Object.values(rest).every((count) => count === 0)).toBe(true);
    const audit = await operator.get<{
      data: { action: string; targetId: string; reason: string }[];
    }>(`/v1/tenants/${tenantId}/audit-events?limit=500`);
    expect(audit.body.data).toContainEqual(
      expect.objectContaining({
        action: 'user.deleted',
        targetId: alice.userId,
        reason: 'ticket 42',
      }),
    );
  });

  it('cancels a run of theirs the server is executing, and the server serves everyone else', async () => {
    const judy = await seed('member');
    const thread = await judy.client.post<Created>('/v1/threads', {});
    const ids = { threadId: thread.body.id, runId: '' };
    const run = await judy.client.post<Created>(`/v1/threads/${ids.threadId}/runs`, {
      agentId,
      input: 'x '.repeat(2_000),
    });
    ids.runId = run.body.id;
    await waitForRun(judy.client, ids, ['running']);
    const [deleted, cancelled] = await heardOn(runCancelChannel, () =>
      deleteUser(judy.userId, '--yes'),
    );
    expect(deleted.err).toEqual([]);
    expect(deleted.status).toBe(0);
    expect(cancelled).toContain(ids.runId);
    const kim = await seed('member');
    const next = await kim.client.post<Created>(`/v1/threads/${ids.threadId}/runs`, {
      agentId,
      input: 'still here?',
    });
    expect(next.status).toBe(404);
    const own = await kim.client.post<Created>('/v1/threads', {});
    const kimRun = await kim.client.post<Created>(`/v1/threads/${own.body.id}/runs`, {
      agentId,
      input: 'still here?',
    });
    const done = await waitForRun(kim.client, { threadId: own.body.id, runId: kimRun.body.id });
    expect(done.status).toBe('completed');
    expect(await remnantsOf(database.url, judy.userId)).toMatchObject({
      runs: 0,
      run_events: 0,
      run_queue: 0,
      threads: 0,
    });
  });

  it('takes an e-mail and prints one line saying what was deleted and what is kept', async () => {
    const bob = await seed('viewer', 'bob@erasure.test');
    const run = await deleteUser('BOB@erasure.test', '--yes');
    expect(run).toEqual({
      status: 0,
      out: [
        `deleted user bob@erasure.test (${bob.userId}) and everything that was theirs; usage records and audit events are kept`,
      ],
      err: [],
    });
    expect((await bob.client.get('/v1/me')).status).toBe(401);
  });

  it('refuses without --yes and deletes nothing', async () => {
    const carol = await seed('member');
    expectOneLineFailure(
      await deleteUser(carol.userId),
      2,
      /^brigade: refusing to delete: .*cannot be undone; add --yes to confirm$/,
    );
    await expectIntact(carol);
  });

  it('names an unknown user id, and a user of another tenant is not found in this one', async () => {
    const unknown = randomUUID();
    expectOneLineFailure(
      await deleteUser(unknown, '--yes'),
      1,
      new RegExp(`^brigade: user_not_found: no user with id '${unknown}' in this tenant$`),
    );
    const otherTenant = await seedTenant(operator, 'elsewhere');
    const stranger = await seedClient(
      { operator, url: serverUrl },
      { tenantId: otherTenant, role: 'member' },
    );
    expectOneLineFailure(await deleteUser(stranger.userId, '--yes'), 1, /user_not_found/);
    await expectIntact(stranger);
    expectOneLineFailure(
      await deleteUser('ghost@erasure.test', '--yes'),
      1,
      /user_not_found: no user with e-mail 'ghost@erasure\.test'/,
    );
  });

  it('refuses a malformed user id or reason before touching anyone', async () => {
    for (const malformed of ['not-a-uuid', '1234', `${randomUUID()}x`]) {
      expectOneLineFailure(
        await deleteUser(malformed, '--yes'),
        2,
        /^brigade: --user must be a user id \(a UUID\) or an e-mail, not '/,
      );
    }
    const dave = await seed('member');
    expectOneLineFailure(
      await deleteUser(dave.userId, '--yes', '--reason', 'x'.repeat(501)),
      2,
      /--reason must be 1 to 500 characters/,
    );
    expectOneLineFailure(
      await cli(['users', 'delete', '--tenant', 'erasure']),
      2,
      /missing --user/,
    );
    expectOneLineFailure(
      await cli(['users', 'delete', '--user', dave.userId, '--yes']),
      2,
      /missing --tenant/,
    );
    // The user is named with --user, like every other command's.
    expectOneLineFailure(
      await cli(['users', 'delete', dave.userId, '--tenant', 'erasure', '--yes']),
      2,
      /unexpected argument/,
    );
    await expectIntact(dave);
  });

  it('refuses to erase the tenant’s last active owner', async () => {
    const tenant = await seedTenant(operator, 'solo');
    const owner = await seedClient(
      { operator, url: serverUrl },
      { tenantId: tenant, role: 'owner' },
    );
    const run = await cli(['users', 'delete', '--tenant', 'solo', '--user', owner.userId, '--yes']);
    expectOneLineFailure(
      run,
      1,
      /^brigade: conflict: A tenant must keep at least one active owner/,
    );
    await expectIntact(owner);
  });

  it('deletes nothing when the configured Redis cannot be reached', async () => {
    const erin = await seed('member');
    const run = await cli(
      ['users', 'delete', '--tenant', 'erasure', '--user', erin.userId, '--yes'],
      { REDIS_URL: 'redis://127.0.0.1:1' },
    );
    expectOneLineFailure(
      run,
      1,
      /^brigade: service_unavailable: cannot reach Redis .*nothing was deleted/,
    );
    await expectIntact(erin);
  });
});
