import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { createTestDatabase, type TestDatabase, testOperatorKey } from './support/test-brigade.ts';
import {
  type LoggedServer,
  newMasterKey,
  runOnce,
  startLoggedServer,
} from './support/tool-fixtures.ts';

/**
 * A stdio MCP server process holds its user's credential in its environment for as long as it
 * lives (here `idleMs` is 10 minutes, longer than the test). Two Brigade processes share one
 * database: `api` executes no runs (concurrency 0), so every run, and every stdio process,
 * lives in `worker`. A user disabled or erased, a credential replaced or deleted, or a
 * registration deleted through either process ends the processes started for it in both,
 * long before they would go idle.
 */
const script = fileURLToPath(new URL('./support/mcp-stdio-server.mjs', import.meta.url));
const closeWithinMs = 8_000;

let database: TestDatabase;
let api: LoggedServer | undefined;
let worker: LoggedServer | undefined;
let operator: ApiClient;
let tenantId: string;
/** The tenant's admin, on each process. */
let adminApi: ApiClient;
let adminWorker: ApiClient;
let agentId: string;
let serverId: string;

function fingerprint(secret: string) {
  return {
    last4: secret.slice(-4),
    sha: createHash('sha256').update(secret).digest('hex').slice(0, 12),
  };
}

/** Whether `pid` runs (a zombie nobody reaped counts as gone: it runs nothing). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}

/** Runs `call mcp:gh:<tool> {}` as `client` and returns what the stdio server answered. */
async function callTool<T>(client: ApiClient, tool: 'pid' | 'whoami', agent = agentId) {
  const result = await runOnce(client, { agentId: agent, input: `call mcp:gh:${tool} {}` });
  expect(result.run.status, result.answer).toBe('completed');
  const marker = `mcp:gh:${tool} returned: `;
  expect(result.answer, result.answer).toContain(marker);
  const output = JSON.parse(result.answer.slice(result.answer.indexOf(marker) + marker.length)) as {
    content: { text: string }[];
  };
  return JSON.parse(output.content[0]?.text ?? 'null') as T;
}

/** The pid of the user's process, which lives in `worker` (its stderr is logged there). */
async function pidOf(client: ApiClient): Promise<number> {
  const { pid } = await callTool<{ pid: number }>(client, 'pid');
  expect(isAlive(pid)).toBe(true);
  const started = (logs: readonly string[] = []) =>
    logs.some(
      (line) => line.includes('stdio-test-server started') && line.includes(`"pid":${pid}`),
    );
  expect(started(worker?.logs)).toBe(true);
  expect(started(api?.logs)).toBe(false);
  return pid;
}

/** A member of the tenant with their own `github` credential, as clients of both processes. */
async function member(secret?: string) {
  const user = await seedUser(operator, { tenantId, role: 'member' });
  const onApi = apiClient(api?.url ?? '', user.secret);
  const onWorker = apiClient(worker?.url ?? '', user.secret);
  if (secret !== undefined)
    expect((await onApi.post('/v1/me/credentials', { name: 'github', secret })).status).toBe(201);
  return { userId: user.userId, onApi, onWorker };
}

beforeAll(async () => {
  database = await createTestDatabase();
  const masterKey = newMasterKey();
  const config = (concurrency: number) => ({
    runs: { pollIntervalMs: 50, concurrency },
    tools: {
      mcpStdio: {
        servers: {
          github: {
            command: process.execPath,
            args: [script, 'GITHUB_TOKEN'],
            credentialEnv: 'GITHUB_TOKEN',
            timeoutMs: 15_000,
            idleMs: 600_000,
          },
        },
      },
    },
  });
  worker = await startLoggedServer(config(8), { BRIGADE_MASTER_KEY: masterKey }, { database });
  api = await startLoggedServer(config(0), { BRIGADE_MASTER_KEY: masterKey }, { database });
  operator = apiClient(api.url, testOperatorKey);
  tenantId = await seedTenant(operator, 'mcp-stdio-revocation');
  const admin = await seedUser(operator, { tenantId, role: 'admin' });
  adminApi = apiClient(api.url, admin.secret);
  adminWorker = apiClient(worker.url, admin.secret);
  const server = await adminApi.post<Created>('/v1/mcp-servers', {
    name: 'gh',
    transport: 'stdio',
    command: 'github',
    auth: { credential: 'github' },
    risk: 'read',
  });
  expect(server.status, JSON.stringify(server.body)).toBe(201);
  serverId = server.body.id;
  const agent = await adminApi.post<Created>('/v1/agents', {
    name: 'stdio-agent',
    tools: ['mcp:gh:pid', 'mcp:gh:whoami'],
  });
  expect(agent.status, JSON.stringify(agent.body)).toBe(201);
  agentId = agent.body.id;
}, 120_000);

afterAll(async () => {
  await api?.stop();
  await worker?.stop();
  await database?.drop();
});

describe('stdio MCP processes end with the access and credentials they were started with', () => {
  it("ends a user's processes when the user is disabled through another process", async () => {
    const alice = await member(`alice-token-${'a'.repeat(24)}`);
    const pid = await pidOf(alice.onApi);
    const disabled = await adminApi.request(
      'PATCH',
      `/v1/tenants/${tenantId}/users/${alice.userId}`,
      { status: 'disabled' },
    );
    expect(disabled.status, JSON.stringify(disabled.body)).toBe(200);
    expect(await waitUntil(() => !isAlive(pid), closeWithinMs)).toBe(true);
    // Nothing of theirs reaches a process any more: their key is refused.
    expect((await alice.onWorker.post('/v1/threads', {})).status).toBe(401);
  });

  it("ends a user's processes when the user is erased, in either process", async () => {
    for (const admin of [adminApi, adminWorker]) {
      const bob = await member(`bob-token-${'b'.repeat(24)}`);
      const pid = await pidOf(bob.onApi);
      const erased = await admin.request(
        'DELETE',
        `/v1/tenants/${tenantId}/users/${bob.userId}?reason=test`,
      );
      expect(erased.status, JSON.stringify(erased.body)).toBe(204);
      expect(await waitUntil(() => !isAlive(pid), closeWithinMs)).toBe(true);
    }
  });

  it('ends the process holding a credential once it is replaced, and starts one with the new value', async () => {
    const first = `carol-token-${'1'.repeat(24)}`;
    const second = `carol-token-${'2'.repeat(24)}`;
    const carol = await member(first);
    expect(await callTool(carol.onApi, 'whoami')).toEqual(fingerprint(first));
    const pid = await pidOf(carol.onApi);
    expect(
      (await carol.onApi.post('/v1/me/credentials', { name: 'github', secret: second })).status,
    ).toBe(201);
    expect(await waitUntil(() => !isAlive(pid), closeWithinMs)).toBe(true);
    expect(await callTool(carol.onApi, 'whoami')).toEqual(fingerprint(second));
    // Deleted: the process started with it ends too.
    const next = await pidOf(carol.onApi);
    const listed = await carol.onApi.get<{ data: { id: string }[] }>('/v1/me/credentials');
    const credentialId = listed.body.data[0]?.id;
    expect((await carol.onApi.request('DELETE', `/v1/me/credentials/${credentialId}`)).status).toBe(
      204,
    );
    expect(await waitUntil(() => !isAlive(next), closeWithinMs)).toBe(true);
  });

  it("ends every user's process started with the tenant's shared credential once it changes", async () => {
    const shared = `shared-token-${'s'.repeat(24)}`;
    expect(
      (await adminWorker.post('/v1/credentials', { name: 'github', secret: shared })).status,
    ).toBe(201);
    const dave = await member();
    const erin = await member();
    expect(await callTool(dave.onApi, 'whoami')).toEqual(fingerprint(shared));
    const pids = [await pidOf(dave.onApi), await pidOf(erin.onApi)];
    expect(
      (await adminApi.post('/v1/credentials', { name: 'github', secret: `${shared}-rotated` }))
        .status,
    ).toBe(201);
    expect(await waitUntil(() => pids.every((pid) => !isAlive(pid)), closeWithinMs)).toBe(true);
    expect(await callTool(erin.onApi, 'whoami')).toEqual(fingerprint(`${shared}-rotated`));
  });

  it("leaves other users' processes alone", async () => {
    const frank = await member(`frank-token-${'f'.repeat(24)}`);
    const grace = await member(`grace-token-${'g'.repeat(24)}`);
    const frankPid = await pidOf(frank.onApi);
    const gracePid = await pidOf(grace.onApi);
    expect(
      (
        await adminApi.request('PATCH', `/v1/tenants/${tenantId}/users/${frank.userId}`, {
          status: 'disabled',
        })
      ).status,
    ).toBe(200);
    expect(await waitUntil(() => !isAlive(frankPid), closeWithinMs)).toBe(true);
    expect(isAlive(gracePid)).toBe(true);
    expect(await pidOf(grace.onApi)).toBe(gracePid);
  });

  it("ends a deleted registration's processes in every process", async () => {
    const heidi = await member(`heidi-token-${'h'.repeat(24)}`);
    const pid = await pidOf(heidi.onApi);
    expect((await adminApi.request('DELETE', `/v1/mcp-servers/${serverId}`)).status).toBe(204);
    expect(await waitUntil(() => !isAlive(pid), closeWithinMs)).toBe(true);
  });
});
