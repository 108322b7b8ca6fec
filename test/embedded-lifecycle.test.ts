import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  type BrigadeProcess,
  cleanUp,
  createWorkspace,
  dataDirOf,
  type Exit,
  hasExited,
  isAlive,
  isRoot,
  operatorKeyPattern,
  processesIn,
  procStat,
  readPostmaster,
  spawnBrigade,
  startBrigade,
  stopBrigade,
  waitForExit,
} from './support/embedded-process.ts';

/**
 * Process-level tests of the embedded deployment mode: the real `brigade serve` CLI is
 * spawned in a fresh working directory (no DATABASE_URL), as `npm start` would run it.
 */

afterEach(cleanUp, 30_000);
afterAll(cleanUp, 30_000);

async function ownerClient(workspace: string): Promise<pg.Client> {
  const credentials = JSON.parse(
    await readFile(join(workspace, '.brigade', 'database-credentials.json'), 'utf8'),
  ) as { ownerPassword: string };
  const port = (await readPostmaster(dataDirOf(workspace)))?.port;
  const password = encodeURIComponent(credentials.ownerPassword);
  const client = new pg.Client(`postgres://postgres:${password}@127.0.0.1:${port}/brigade`);
  await client.connect();
  return client;
}

/** Every row of every table in the database, as text. */
async function allRowText(client: pg.Client): Promise<string[]> {
  const tables = await client.query<{ table_schema: string; table_name: string }>(
    `select table_schema, table_name from information_schema.tables
      where table_type = 'BASE TABLE' and table_schema not in ('pg_catalog', 'information_schema')`,
  );
  const rows: string[] = [];
  for (const { table_schema: schema, table_name: table } of tables.rows) {
    const name = `${client.escapeIdentifier(schema)}.${client.escapeIdentifier(table)}`;
    const result = await client.query<{ row: string }>(`select t::text as row from ${name} t`);
    rows.push(...result.rows.map((row) => row.row));
  }
  return rows;
}

/** Files under `directory` whose bytes contain `needle`. */
async function filesContaining(directory: string, needle: string): Promise<string[]> {
  const entries = await readdir(directory, { recursive: true, withFileTypes: true });
  const matches: string[] = [];
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const bytes = await readFile(path).catch(() => Buffer.alloc(0));
    if (bytes.includes(needle)) matches.push(path);
  }
  return matches;
}

async function getJson(url: string, key?: string) {
  const headers = key === undefined ? undefined : { authorization: `Bearer ${key}` };
  const response = await fetch(url, headers === undefined ? {} : { headers });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function operatorKeysIn(output: string): string[] {
  return output.match(operatorKeyPattern) ?? [];
}

/** Checks a start-up failure: non-zero exit, one stderr line, no stack; returns the line. */
function expectOneLineFailure(attempt: BrigadeProcess, exit: Exit): string {
  expect(exit.signal).toBeNull();
  expect(exit.code).not.toBe(0);
  const message = attempt.stderr().trim();
  expect(message.split('\n')).toHaveLength(1);
  expect(message).toMatch(/^brigade: /);
  expect(message).not.toMatch(/\bat .*:\d+:\d+/);
  expect(attempt.stdout()).not.toContain('listening on');
  return message;
}

describe('brigade serve with embedded PostgreSQL', { timeout: 60_000 }, () => {
  it('prints the operator key once, stores only its SHA-256, and accepts it after a restart', async () => {
    const workspace = await createWorkspace();
    const first = await startBrigade(workspace);
    const printed = operatorKeysIn(first.stdout());
    expect(printed).toHaveLength(1);
    expect(operatorKeysIn(first.stderr())).toHaveLength(0);
    const key = printed[0]!;
    const me = await getJson(`${first.url}/v1/me`, key);
    expect(me.status).toBe(200);
    expect(me.body['kind']).toBe('operator');
    expect((await getJson(`${first.url}/v1/me`)).status).toBe(401);
    expect((await getJson(`${first.url}/v1/me`, `${key}x`)).status).toBe(401);

    const client = await ownerClient(workspace);
    try {
      const stored = await client.query<{ key_hash: Buffer }>(
        'select key_hash from brigade.operator_keys',
      );
      expect(stored.rows).toHaveLength(1);
      const hash = stored.rows[0]!.key_hash;
      expect(hash).toHaveLength(32);
      expect(hash.equals(createHash('sha256').update(key, 'utf8').digest())).toBe(true);
      const secretPart = key.slice('brg_op_'.length);
      const rows = await allRowText(client);
      expect(rows.length).toBeGreaterThan(0);
      expect(rows.filter((row) => row.includes(secretPart))).toEqual([]);
    } finally {
      await client.end();
    }
    expect(await stopBrigade(first)).toEqual({ code: 0, signal: null });

    const second = await startBrigade(workspace);
    expect(operatorKeysIn(second.stdout() + second.stderr())).toEqual([]);
    const again = await getJson(`${second.url}/v1/me`, key);
    expect(again.status).toBe(200);
    expect(again.body['kind']).toBe('operator');
    expect(await stopBrigade(second)).toEqual({ code: 0, signal: null });
    // Nothing on disk (heap, WAL, credentials, logs) holds the plaintext.
    expect(await filesContaining(workspace, key.slice('brg_op_'.length))).toEqual([]);
  });

  it.skipIf(!isRoot)(
    'gives the data directory to the postgres OS user when run as root',
    async () => {
      const workspace = await createWorkspace();
      const running = await startBrigade(workspace);
      const postgresUid = Number(
        execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim(),
      );
      expect(postgresUid).toBeGreaterThan(0);
      expect(statSync(dataDirOf(workspace)).uid).toBe(postgresUid);
      expect(await stopBrigade(running)).toEqual({ code: 0, signal: null });
    },
  );

  it('exits 0 on SIGTERM and leaves no PostgreSQL running on its data directory', async () => {
    const workspace = await createWorkspace();
    const dataDir = dataDirOf(workspace);
    const running = await startBrigade(workspace);
    const postmaster = await readPostmaster(dataDir);
    expect(postmaster).toBeDefined();
    expect(isAlive(postmaster!.pid)).toBe(true);
    const startedAt = Date.now();
    expect(await stopBrigade(running)).toEqual({ code: 0, signal: null });
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    expect(isAlive(postmaster!.pid)).toBe(false);
    expect(await processesIn(dataDir)).toEqual([]);
    expect(existsSync(join(dataDir, 'postmaster.pid'))).toBe(false);
  });

  it('recovers the directory after kill -9: stops the orphaned PostgreSQL and keeps the data', async () => {
    const workspace = await createWorkspace();
    const dataDir = dataDirOf(workspace);
    const first = await startBrigade(workspace);
    const key = operatorKeysIn(first.stdout())[0]!;
    const created = await fetch(`${first.url}/v1/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ slug: 'survivor', name: 'Survivor' }),
    });
    expect(created.status).toBe(201);
    const tenantId = ((await created.json()) as { id: string }).id;
    const orphan = await readPostmaster(dataDir);

    first.child.kill('SIGKILL');
    expect(await waitForExit(first, 5_000)).toEqual({ code: null, signal: 'SIGKILL' });
    expect(isAlive(orphan!.pid)).toBe(true);
    expect(procStat(orphan!.pid)?.parent).not.toBe(first.child.pid);

    const second = await startBrigade(workspace);
    expect(isAlive(orphan!.pid)).toBe(false);
    const restarted = await readPostmaster(dataDir);
    expect(restarted?.pid).not.toBe(orphan!.pid);
    const tenant = await getJson(`${second.url}/v1/tenants/${tenantId}`, key);
    expect(tenant.status).toBe(200);
    expect(tenant.body).toMatchObject({ id: tenantId, slug: 'survivor' });
    expect(await stopBrigade(second)).toEqual({ code: 0, signal: null });
    expect(await processesIn(dataDir)).toEqual([]);
  });

  it('fails fast with a one-line message when the configured embedded port is taken', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const address = blocker.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    try {
      const workspace = await createWorkspace({ database: { embedded: { port } } });
      const attempt = spawnBrigade(workspace);
      // It exits instead of waiting for the port (waitForExit fails the test if it hangs);
      // how fast is a benchmark's business, not a test's (two busy cores make it vary).
      const exit = await waitForExit(attempt, 30_000);
      expect(expectOneLineFailure(attempt, exit)).toContain(`port ${port}`);
      expect(existsSync(join(dataDirOf(workspace), 'postmaster.pid'))).toBe(false);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('refuses a second server on a directory in use and leaves the first one serving', async () => {
    const workspace = await createWorkspace();
    const dataDir = dataDirOf(workspace);
    const first = await startBrigade(workspace);
    const key = operatorKeysIn(first.stdout())[0]!;
    const before = await readPostmaster(dataDir);

    const second = spawnBrigade(workspace);
    const exit = await waitForExit(second, 20_000);
    const message = expectOneLineFailure(second, exit);
    expect(message).toMatch(/another Brigade process/);
    expect(message).toContain(dataDir);

    expect(hasExited(first.child)).toBe(false);
    expect(await readPostmaster(dataDir)).toEqual(before);
    expect(isAlive(before!.pid)).toBe(true);
    const me = await getJson(`${first.url}/v1/me`, key);
    expect(me.status).toBe(200);
    expect(me.body['kind']).toBe('operator');
    expect(await stopBrigade(first)).toEqual({ code: 0, signal: null });
  });
});
