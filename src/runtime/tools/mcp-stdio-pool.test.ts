import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createMcpStdioPool,
  type McpStdioDeclaration,
  type McpStdioPool,
} from './mcp-stdio-pool.ts';

const script = fileURLToPath(
  new URL('../../../test/support/mcp-stdio-server.mjs', import.meta.url),
);

function declaration(overrides: Partial<McpStdioDeclaration> = {}): McpStdioDeclaration {
  return {
    command: process.execPath,
    args: [script, 'TOKEN'],
    env: {},
    credentialEnv: 'TOKEN',
    timeoutMs: 10_000,
    idleMs: 60_000,
    maxProcesses: 10,
    ...overrides,
  };
}

function recordingLogger() {
  const lines: { fields: Record<string, unknown>; message: string }[] = [];
  const record = (fields: Record<string, unknown>, message: string) => {
    lines.push({ fields, message });
  };
  return { lines, info: record, warn: record };
}

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
  while (Date.now() < deadline && !check()) await new Promise((resolve) => setTimeout(resolve, 25));
  return check();
}

async function pidOf(pool: McpStdioPool, userId: string, secret = `secret-of-${userId}`) {
  return pool.withSession(
    { tenantId: 't', userId, serverId: 's', command: 'test', secret },
    async (session) => {
      const result = await session.callTool(
        'pid',
        {},
        {
          signal: AbortSignal.timeout(10_000),
          timeoutMs: 10_000,
        },
      );
      const content = result.content as { text: string }[];
      return (JSON.parse(content[0]?.text ?? '{}') as { pid: number }).pid;
    },
  );
}

let pool: McpStdioPool | undefined;
afterEach(async () => {
  await pool?.closeAll();
});

describe('the stdio MCP process pool', () => {
  it('closes the least recently used idle process when the pool is full', async () => {
    pool = createMcpStdioPool({ servers: { test: declaration() }, maxProcesses: 2 });
    const first = await pidOf(pool, 'u1');
    const second = await pidOf(pool, 'u2');
    expect(await pidOf(pool, 'u1')).toBe(first);
    const third = await pidOf(pool, 'u3');
    expect(pool.size).toBe(2);
    expect(await waitUntil(() => !isAlive(second), 8_000)).toBe(true);
    expect(isAlive(first) && isAlive(third)).toBe(true);
  });

  it("respects a server's own maximum and refuses when every process is busy", async () => {
    pool = createMcpStdioPool({
      servers: { test: declaration({ maxProcesses: 1 }) },
      maxProcesses: 10,
    });
    const current = pool;
    let release = () => {};
    let started = () => {};
    const running = new Promise<void>((resolve) => (started = resolve));
    const busy = current.withSession(
      { tenantId: 't', userId: 'u1', serverId: 's', command: 'test', secret: 'a-secret' },
      () =>
        new Promise<void>((resolve) => {
          release = resolve;
          started();
        }),
    );
    await running;
    await expect(pidOf(current, 'u2')).rejects.toThrow(/busy/);
    release();
    await busy;
    expect(await pidOf(current, 'u2')).toBeGreaterThan(0);
    expect(current.size).toBe(1);
  });

  it('counts the processes of registration probes against the limits', async () => {
    pool = createMcpStdioPool({
      servers: { test: declaration({ maxProcesses: 2 }) },
      maxProcesses: 10,
    });
    const current = pool;
    // Probes at once: no more processes than the server's maximum are started.
    const outcomes = await Promise.allSettled(
      Array.from({ length: 6 }, () => current.probe('test')),
    );
    const refused = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(outcomes.length - refused.length).toBe(2);
    for (const outcome of refused) expect(String(outcome.reason)).toMatch(/busy/);
    // A busy process and a probe fill the server's two places: another user is refused.
    let release = () => {};
    let started = () => {};
    const running = new Promise<void>((resolve) => (started = resolve));
    const busy = current.withSession(
      { tenantId: 't', userId: 'u1', serverId: 's', command: 'test', secret: 'a-secret' },
      () =>
        new Promise<void>((resolve) => {
          release = resolve;
          started();
        }),
    );
    await running;
    const probe = current.probe('test');
    await expect(pidOf(current, 'u2')).rejects.toThrow(/busy/);
    await probe;
    release();
    await busy;
    expect((await current.probe('test')).length).toBeGreaterThan(0);
  });

  it('starts a new process when the user’s credential changed', async () => {
    pool = createMcpStdioPool({ servers: { test: declaration() }, maxProcesses: 4 });
    const before = await pidOf(pool, 'u1', 'old-secret-value');
    const after = await pidOf(pool, 'u1', 'new-secret-value');
    expect(after).not.toBe(before);
    expect(await waitUntil(() => !isAlive(before), 8_000)).toBe(true);
  });

  it('logs stderr redacted and up to its cap', async () => {
    const logger = recordingLogger();
    const secret = 'ghp_abcdefghijklmnopqrstuvwxyz0123456789';
    const noisy = `process.stderr.write(process.env.TOKEN + '\\n' + 'noise line\\n'.repeat(5000)); setInterval(() => {}, 1000);`;
    pool = createMcpStdioPool({
      servers: { test: declaration({ args: ['-e', noisy], timeoutMs: 1_500 }) },
      maxProcesses: 2,
      logger,
      maxStderrBytes: 2_000,
    });
    await expect(
      pool.withSession(
        { tenantId: 't', userId: 'u', serverId: 's', command: 'test', secret },
        async () => undefined,
      ),
    ).rejects.toThrow(/did not start/);
    const stderr = logger.lines.filter((line) => line.message === 'MCP server stderr');
    expect(stderr[0]?.fields['stderr']).toBe('[redacted]');
    const logged = stderr.reduce((sum, line) => sum + String(line.fields['stderr']).length, 0);
    expect(logged).toBeLessThanOrEqual(2_000);
    expect(logger.lines.some((line) => line.message.includes('over its cap'))).toBe(true);
    expect(JSON.stringify(logger.lines)).not.toContain(secret);
  });

  it('refuses a server nobody declared', async () => {
    pool = createMcpStdioPool({ servers: {}, maxProcesses: 2 });
    await expect(pool.probe('nosuch')).rejects.toThrow(/no stdio MCP server named 'nosuch'/);
  });
});
