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
import { testOperatorKey } from './support/test-brigade.ts';
import { type LoggedServer, runOnce, startLoggedServer } from './support/tool-fixtures.ts';

const script = fileURLToPath(new URL('./support/mcp-stdio-server.mjs', import.meta.url));
const canaryA = `stdio-canary-A-${'1'.repeat(20)}wxyz`;
const canaryB = `stdio-canary-B-${'2'.repeat(20)}abcd`;
const brigadeSecrets = {
  BRIGADE_MASTER_KEY: `master-key-canary-${'m'.repeat(30)}`,
  DATABASE_URL: 'postgres://canary:canary-password@127.0.0.1:1/canary',
};
const idleMs = 600;
// biome-ignore lint/style/noProcessEnv: canaries of Brigade's secrets go in the test process's environment, which no stdio child may inherit.
const hostEnvironment = process.env;

let server: LoggedServer | undefined;
let admin: ApiClient;
let alice: ApiClient;
let bob: ApiClient;
let whoamiAgent: string;
let quickAgent: string;
const seenPids = new Set<number>();

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

/** Runs `call <tool> {}` as `client` and returns the JSON the stdio server's tool answered. */
async function callTool<T>(client: ApiClient, agentId: string, tool: string): Promise<T> {
  const result = await runOnce(client, { agentId, input: `call ${tool} {}` });
  expect(result.run.status, result.answer).toBe('completed');
  const marker = `${tool} returned: `;
  expect(result.answer, result.answer).toContain(marker);
  const output = JSON.parse(result.answer.slice(result.answer.indexOf(marker) + marker.length)) as {
    content: { text: string }[];
  };
  const value = JSON.parse(output.content[0]?.text ?? 'null') as T;
  const pid = (value as { pid?: unknown }).pid;
  if (typeof pid === 'number') seenPids.add(pid);
  return value;
}

beforeAll(async () => {
  // Brigade's own secrets in its process environment: no child may see them.
  Object.assign(hostEnvironment, brigadeSecrets);
  server = await startLoggedServer(
    {
      tools: {
        mcpStdio: {
          maxProcesses: 8,
          servers: {
            github: {
              command: process.execPath,
              args: [script, 'GITHUB_TOKEN'],
              env: { STDIO_TEST_MODE: 'on' },
              credentialEnv: 'GITHUB_TOKEN',
              timeoutMs: 15_000,
              idleMs: 120_000,
            },
            quick: { command: process.execPath, args: [script], idleMs, timeoutMs: 15_000 },
            broken: {
              command: process.execPath,
              args: ['-e', 'process.exit(3)'],
              timeoutMs: 5_000,
            },
            single: {
              command: process.execPath,
              args: [script],
              timeoutMs: 15_000,
              maxProcesses: 1,
            },
          },
        },
      },
    },
    // Brigade's environment as a real process has it: PATH, and its secrets (DATABASE_URL and
    // BRIGADE_MASTER_KEY are set by the fixture, canaries of them in process.env above).
    { PATH: hostEnvironment['PATH'] ?? '/usr/bin:/bin' },
  );
  const operator = apiClient(server.url, testOperatorKey);
  const tenantId = await seedTenant(operator, 'mcp-stdio');
  admin = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'admin' })).secret);
  alice = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
  bob = apiClient(server.url, (await seedUser(operator, { tenantId, role: 'member' })).secret);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  for (const name of Object.keys(brigadeSecrets)) delete hostEnvironment[name];
});

describe('stdio MCP servers', () => {
  it('refuses a command the operator did not declare, with its own code', async () => {
    const refused = await admin.post<{ code: string; detail: string }>('/v1/mcp-servers', {
      name: 'shell',
      transport: 'stdio',
      command: 'bash',
    });
    expect(refused.status).toBe(422);
    expect(refused.body.code).toBe('unknown_mcp_command');
    const commandLine = await admin.post('/v1/mcp-servers', {
      name: 'shell',
      transport: 'stdio',
      command: '/bin/sh -c id',
    });
    expect(commandLine.status).toBe(422);
    const withUrl = await admin.post('/v1/mcp-servers', {
      name: 'mixed',
      transport: 'stdio',
      command: 'github',
      url: 'http://127.0.0.1:1/mcp',
    });
    expect(withUrl.status).toBe(422);
  });

  it('refuses a declared server that exits at once, at registration', async () => {
    const refused = await admin.post('/v1/mcp-servers', {
      name: 'broken',
      transport: 'stdio',
      command: 'broken',
    });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain('did not start');
  });

  it('starts no more processes for registrations than the server may have', async () => {
    // Each registration starts the server once to list its tools: registrations at once must
    // not start more processes than the operator allowed (here one).
    const attempts = await Promise.all(
      Array.from({ length: 5 }, (_, index) =>
        admin.post<{ detail?: string }>('/v1/mcp-servers', {
          name: `single-${index}`,
          transport: 'stdio',
          command: 'single',
        }),
      ),
    );
    const list = await admin.get<{ data: { id: string; name: string }[] }>('/v1/mcp-servers');
    for (const entry of list.body.data.filter((item) => item.name.startsWith('single-')))
      expect((await admin.request('DELETE', `/v1/mcp-servers/${entry.id}`)).status).toBe(204);
    const refused = attempts.filter((attempt) => attempt.status !== 201);
    expect(refused.length).toBeGreaterThan(0);
    for (const attempt of refused) {
      expect(attempt.status).toBe(422);
      expect(JSON.stringify(attempt.body)).toContain('busy');
    }
  });

  it('refuses a credential for a server that declares no credential variable', async () => {
    const refused = await admin.post('/v1/mcp-servers', {
      name: 'quick',
      transport: 'stdio',
      command: 'quick',
      auth: { credential: 'github' },
    });
    expect(refused.status).toBe(422);
    expect(JSON.stringify(refused.body)).toContain('takes no credential');
  });

  it('registers declared servers that members list and agents use', async () => {
    expect(
      (await alice.post('/v1/mcp-servers', { name: 'gh', transport: 'stdio', command: 'github' }))
        .status,
    ).toBe(403);
    const created = await admin.post<Created>('/v1/mcp-servers', {
      name: 'gh',
      transport: 'stdio',
      command: 'github',
      auth: { credential: 'github' },
      risk: 'read',
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ name: 'gh', transport: 'stdio', command: 'github' });
    expect(created.body).not.toHaveProperty('url');
    const quick = await admin.post('/v1/mcp-servers', {
      name: 'idle',
      transport: 'stdio',
      command: 'quick',
    });
    expect(quick.status, JSON.stringify(quick.body)).toBe(201);
    const listed = await alice.get<{ data: { name: string; transport: string }[] }>(
      '/v1/mcp-servers',
    );
    expect(listed.body.data.map((item) => [item.name, item.transport])).toEqual([
      ['gh', 'stdio'],
      ['idle', 'stdio'],
    ]);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'stdio-agent',
      tools: ['mcp:gh:whoami', 'mcp:gh:pid', 'mcp:gh:env_keys'],
    });
    expect(agent.status, JSON.stringify(agent.body)).toBe(201);
    whoamiAgent = agent.body.id;
    const quickOne = await admin.post<Created>('/v1/agents', {
      name: 'idle-agent',
      tools: ['mcp:idle:pid', 'mcp:idle:spawn_child', 'mcp:idle:env_keys'],
    });
    expect(quickOne.status, JSON.stringify(quickOne.body)).toBe(201);
    quickAgent = quickOne.body.id;
  });

  it("gives each user their own process, started with that user's credential", async () => {
    for (const [client, secret] of [
      [alice, canaryA],
      [bob, canaryB],
    ] as const)
      expect((await client.post('/v1/me/credentials', { name: 'github', secret })).status).toBe(
        201,
      );
    expect(await callTool(alice, whoamiAgent, 'mcp:gh:whoami')).toEqual(fingerprint(canaryA));
    expect(await callTool(bob, whoamiAgent, 'mcp:gh:whoami')).toEqual(fingerprint(canaryB));
    const alicePid = (await callTool<{ pid: number }>(alice, whoamiAgent, 'mcp:gh:pid')).pid;
    const bobPid = (await callTool<{ pid: number }>(bob, whoamiAgent, 'mcp:gh:pid')).pid;
    expect(alicePid).not.toBe(bobPid);
    expect(alicePid).not.toBe(process.pid);
    // The process is kept for the user's next call.
    expect((await callTool<{ pid: number }>(alice, whoamiAgent, 'mcp:gh:pid')).pid).toBe(alicePid);
  });

  it("passes no variable of Brigade's environment but PATH", async () => {
    const { keys } = await callTool<{ keys: string[] }>(alice, whoamiAgent, 'mcp:gh:env_keys');
    expect(keys).toEqual(['GITHUB_TOKEN', 'PATH', 'STDIO_TEST_MODE']);
    const plain = await callTool<{ keys: string[] }>(alice, quickAgent, 'mcp:idle:env_keys');
    expect(plain.keys).toEqual(['PATH']);
  });

  it('logs the processes’ stderr without the secrets in it', async () => {
    const logs = server?.logs.join('') ?? '';
    expect(logs).toContain('stdio-test-server started; credential [redacted]');
    for (const secret of [canaryA, canaryB, ...Object.values(brigadeSecrets)])
      expect(logs).not.toContain(secret);
  });

  it('starts a process again when it died between calls', async () => {
    const before = (await callTool<{ pid: number }>(alice, whoamiAgent, 'mcp:gh:pid')).pid;
    process.kill(before, 'SIGKILL');
    expect(await waitUntil(() => !isAlive(before), 5_000)).toBe(true);
    const after = (await callTool<{ pid: number }>(alice, whoamiAgent, 'mcp:gh:pid')).pid;
    expect(after).not.toBe(before);
    expect(await callTool(alice, whoamiAgent, 'mcp:gh:whoami')).toEqual(fingerprint(canaryA));
  });

  it('stops an idle process and the processes it started', async () => {
    const { pid } = await callTool<{ pid: number }>(bob, quickAgent, 'mcp:idle:pid');
    const child = (await callTool<{ pid: number }>(bob, quickAgent, 'mcp:idle:spawn_child')).pid;
    const lastUse = Date.now();
    expect(isAlive(pid) && isAlive(child)).toBe(true);
    expect(await waitUntil(() => !isAlive(pid) && !isAlive(child), idleMs + 8_000)).toBe(true);
    expect(Date.now() - lastUse).toBeGreaterThanOrEqual(idleMs - 50);
  });

  it("stops a deleted server's processes", async () => {
    const created = await admin.post<Created>('/v1/mcp-servers', {
      name: 'gone',
      transport: 'stdio',
      command: 'github',
      auth: { credential: 'github' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const agent = await admin.post<Created>('/v1/agents', {
      name: 'gone-agent',
      tools: ['mcp:gone:pid'],
    });
    const { pid } = await callTool<{ pid: number }>(alice, agent.body.id, 'mcp:gone:pid');
    expect((await admin.request('DELETE', `/v1/mcp-servers/${created.body.id}`)).status).toBe(204);
    expect(await waitUntil(() => !isAlive(pid), 8_000)).toBe(true);
  });

  it('stops every process when Brigade stops', async () => {
    const alive = [...seenPids].filter(isAlive);
    expect(alive.length).toBeGreaterThan(0);
    await server?.stop();
    server = undefined;
    expect(await waitUntil(() => [...seenPids].every((pid) => !isAlive(pid)), 10_000)).toBe(true);
  });
});
