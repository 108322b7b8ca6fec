import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { type Brigade, createBrigade } from '../../src/main.ts';
import { createLogger } from '../../src/observability/index.ts';
import type { CorePluginV1 } from '../../src/plugin-api/index.ts';

/** The operator key every test server accepts. */
export const testOperatorKey = `test-operator-key-${'x'.repeat(16)}`;

/** A fresh database on the test cluster; dropped by `drop()`. */
export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  drop(): Promise<void>;
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/** Runs one statement as the cluster owner on the maintenance database. */
export async function clusterQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: inject('clusterUrl') });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** Creates an empty database for one test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `brigade_t_${randomBytes(6).toString('hex')}`;
  await clusterQuery(`create database ${name}`);
  return {
    name,
    url: withDatabase(inject('clusterUrl'), name),
    drop: () => clusterQuery(`drop database if exists ${name} with (force)`),
  };
}

/** A running Brigade server on a fresh database, for HTTP tests. */
export interface TestServer {
  readonly url: string;
  readonly brigade: Brigade;
  readonly database: TestDatabase;
  stop(): Promise<void>;
}

/**
 * Starts Brigade on a fresh database (or on `extra.database`, shared with another server and
 * then left in place by `stop()`) and a free port, with `file` as its config file.
 */
export async function startTestServer(
  file: Record<string, unknown> = {},
  extra: {
    readonly env?: Record<string, string>;
    readonly cores?: readonly CorePluginV1[];
    readonly database?: TestDatabase;
    /** The server's logger (default: silent). */
    readonly logger?: ReturnType<typeof createLogger>;
  } = {},
): Promise<TestServer> {
  const database = extra.database ?? (await createTestDatabase());
  const config = loadConfig({
    file: {
      ...file,
      server: { port: 0, shutdownGraceMs: 1000, ...(file['server'] as object | undefined) },
    },
    env: {
      DATABASE_URL: database.url,
      BRIGADE_OPERATOR_KEY: testOperatorKey,
      LOG_LEVEL: 'silent',
      ...extra.env,
    },
  });
  const brigade = await createBrigade({
    config,
    logger: extra.logger ?? createLogger({ level: 'silent' }),
    ...(extra.cores === undefined ? {} : { cores: extra.cores }),
  });
  const url = await brigade.listen();
  return {
    url,
    brigade,
    database,
    async stop() {
      await brigade.stop();
      if (extra.database === undefined) await database.drop();
    },
  };
}
