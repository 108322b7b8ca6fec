import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createMcpStdioPool,
  type McpStdioDeclaration,
  type McpStdioPool,
} from './mcp-stdio-pool.ts';
import type { McpStdioOwner } from './mcp-stdio-target.ts';

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

/** The pid of `userId`'s process (`owner.secret`: their secret; the rest: the owner's fields). */
async function pidOf(
  pool: McpStdioPool,
  userId: string,
  owner: Partial<McpStdioOwner> & { readonly secret?: string } = {},
): Promise<number> {
  const { secret = `secret-of-${userId}`, ...rest } = owner;
  return pool.withSession(
    {
      tenantId: 't',
      userId,
      serverId: 's',
      command: 'test',
      readSecret: async () => secret,
      ...rest,
    },
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
      {
        tenantId: 't',
        userId: 'u1',
        serverId: 's',
        command: 'test',
        readSecret: async () => 'a-secret',
      },
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
      {
        tenantId: 't',
        userId: 'u1',
        serverId: 's',
        command: 'test',
        readSecret: async () => 'a-secret',
      },
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
    const before = await pidOf(pool, 'u1', { secret: 'old-secret-value' });
    const after = await pidOf(pool, 'u1', { secret: 'new-secret-value' });
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
        {
          tenantId: 't',
          userId: 'u',
          serverId: 's',
          command: 'test',
          readSecret: async () => secret,
        },
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

  it('closes at once the processes a target names, and no others', async () => {
    pool = createMcpStdioPool({ servers: { test: declaration() }, maxProcesses: 10 });
    const started = async (userId: string, owner: Partial<McpStdioOwner>) =>
      pidOf(pool as McpStdioPool, userId, owner);
    const aliceOwn = await started('u1', { credential: 'github' });
    const aliceOther = await started('u1', { credential: 'jira', serverId: 's2' });
    const bob = await started('u2', { credential: 'github' });
    const elsewhere = await started('u3', { tenantId: 't2', credential: 'github' });
    // Alice's 'github' credential changed: only her process started with it ends.
    expect(pool.close({ tenantId: 't', userId: 'u1', credential: 'github' }, 'changed')).toBe(1);
    expect(await waitUntil(() => !isAlive(aliceOwn), 8_000)).toBe(true);
    expect([aliceOther, bob, elsewhere].every(isAlive)).toBe(true);
    // The tenant's shared 'github' changed: every user's process started with that name ends.
    expect(pool.close({ tenantId: 't', credential: 'github' }, 'changed')).toBe(1);
    expect(await waitUntil(() => !isAlive(bob), 8_000)).toBe(true);
    // Alice was disabled: all of hers end; another tenant's user keeps theirs.
    expect(pool.close({ tenantId: 'T', userId: 'U1' }, 'disabled')).toBe(1);
    expect(await waitUntil(() => !isAlive(aliceOther), 8_000)).toBe(true);
    expect(isAlive(elsewhere)).toBe(true);
    // The next call starts a new process.
    expect(await started('u1', { credential: 'github' })).not.toBe(aliceOwn);
  });

  it('ends a busy process at once when its user is disabled', async () => {
    pool = createMcpStdioPool({ servers: { test: declaration() }, maxProcesses: 10 });
    const pid = await pidOf(pool, 'u1');
    const hanging = pool.withSession(
      {
        tenantId: 't',
        userId: 'u1',
        serverId: 's',
        command: 'test',
        readSecret: async () => 'secret-of-u1',
      },
      (session) =>
        session
          .callTool('pid', {}, { signal: new AbortController().signal, timeoutMs: 60_000 })
          .then(() => new Promise(() => undefined)),
    );
    await new Promise((resolve) => setTimeout(resolve, 200));
    pool.close({ tenantId: 't', userId: 'u1' }, 'disabled');
    expect(await waitUntil(() => !isAlive(pid), 8_000)).toBe(true);
    expect(pool.size).toBe(0);
    void hanging.catch(() => undefined);
  });

  it('starts no process with a secret read before a close that names it', async () => {
    pool = createMcpStdioPool({ servers: { test: declaration() }, maxProcesses: 10 });
    const current = pool;
    const values = ['old-secret-value', 'new-secret-value'];
    let reads = 0;
    const secretSeen = await current.withSession(
      {
        tenantId: 't',
        userId: 'u1',
        serverId: 's',
        command: 'test',
        credential: 'github',
        readSecret: async () => {
          const value = values[Math.min(reads, 1)];
          reads += 1;
          // The credential is replaced while the first read is under way.
          if (reads === 1) current.close({ tenantId: 't', credential: 'github' }, 'changed');
          return value;
        },
      },
      async (session) => {
        const result = await session.callTool(
          'whoami',
          {},
          { signal: AbortSignal.timeout(10_000), timeoutMs: 10_000 },
        );
        return (result.content as { text: string }[])[0]?.text ?? '';
      },
    );
    expect(reads).toBe(2);
    expect(JSON.parse(secretSeen)).toEqual({
      last4: 'alue',
      sha: createHash('sha256').update('new-secret-value').digest('hex').slice(0, 12),
    });
    // A close that names someone else does not make the call read again.
    let otherReads = 0;
    await current.withSession(
      {
        tenantId: 't',
        userId: 'u2',
        serverId: 's',
        command: 'test',
        credential: 'github',
        readSecret: async () => {
          otherReads += 1;
          current.close({ tenantId: 't', userId: 'u9' }, 'disabled');
          return 'secret-of-u2';
        },
      },
      async () => undefined,
    );
    expect(otherReads).toBe(1);
  });

  it('starts no process for a call whose run was cancelled', async () => {
    pool = createMcpStdioPool({ servers: { test: declaration() }, maxProcesses: 10 });
    const controller = new AbortController();
    controller.abort('cancel');
    await expect(
      pool.withSession(
        {
          tenantId: 't',
          userId: 'u1',
          serverId: 's',
          command: 'test',
          readSecret: async () => 'x',
        },
        async () => 'reached',
        controller.signal,
      ),
    ).rejects.toThrow(/cancelled/);
    expect(pool.size).toBe(0);
  });

  it('recycles idle processes at once and busy ones when their call ends', async () => {
    pool = createMcpStdioPool({ servers: { test: declaration() }, maxProcesses: 10 });
    const current = pool;
    const idle = await pidOf(current, 'u1');
    let release = () => {};
    let started = () => {};
    const running = new Promise<void>((resolve) => (started = resolve));
    let busyPid = 0;
    const busy = current.withSession(
      { tenantId: 't', userId: 'u2', serverId: 's', command: 'test', readSecret: async () => 'b' },
      async (session) => {
        const result = await session.callTool(
          'pid',
          {},
          { signal: AbortSignal.timeout(10_000), timeoutMs: 10_000 },
        );
        busyPid = (
          JSON.parse((result.content as { text: string }[])[0]?.text ?? '{}') as {
            pid: number;
          }
        ).pid;
        started();
        await new Promise<void>((resolve) => (release = resolve));
      },
    );
    await running;
    current.recycle('reconnected');
    expect(await waitUntil(() => !isAlive(idle), 8_000)).toBe(true);
    expect(isAlive(busyPid)).toBe(true);
    // A new call of the busy process's user gets a new process.
    expect(await pidOf(current, 'u2', { secret: 'b' })).not.toBe(busyPid);
    release();
    await busy;
    expect(await waitUntil(() => !isAlive(busyPid), 8_000)).toBe(true);
  });

  it('refuses a server nobody declared', async () => {
    pool = createMcpStdioPool({ servers: {}, maxProcesses: 2 });
    await expect(pool.probe('nosuch')).rejects.toThrow(/no stdio MCP server named 'nosuch'/);
  });
});
