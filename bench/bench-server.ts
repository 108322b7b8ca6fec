import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig, processEnvironment } from '../src/config/index.ts';
import { type Brigade, createBrigade } from '../src/main.ts';
import { createLogger } from '../src/observability/index.ts';

/** Operator key of benchmark servers. */
export const benchOperatorKey = 'bench-operator-key-0123456789abcdef';

/** A Brigade started for a benchmark, on the embedded database or DATABASE_URL. */
export interface BenchServer {
  readonly url: string;
  readonly brigade: Brigade;
  stop(): Promise<void>;
}

/** Starts Brigade in this process with `file` merged into its config. */
export async function startBenchServer(file: Record<string, unknown>): Promise<BenchServer> {
  const env = processEnvironment();
  const directory =
    env['DATABASE_URL'] === undefined ? await mkdtemp(join(tmpdir(), 'brigade-bench-')) : undefined;
  if (directory !== undefined) await chmod(directory, 0o755);
  const config = loadConfig({
    file: {
      ...file,
      server: { port: 0 },
      // Benchmarks measure throughput, not the limiter's refusals.
      limits: { requestsPerMinute: { key: 10_000_000, user: 10_000_000, tenant: 10_000_000 } },
      ...(directory === undefined
        ? {}
        : { database: { embedded: { dataDir: join(directory, 'postgres') }, poolSize: 20 } }),
    },
    env: { ...env, BRIGADE_OPERATOR_KEY: benchOperatorKey, LOG_LEVEL: 'silent' },
  });
  const brigade = await createBrigade({ config, logger: createLogger({ level: 'silent' }) });
  const url = await brigade.listen();
  const statistics = env['BENCH_PG_STATS'] === '1' ? await functionStatistics(brigade) : undefined;
  return {
    url,
    brigade,
    async stop() {
      await statistics?.report();
      await brigade.stop();
      if (directory !== undefined) await rm(directory, { recursive: true, force: true });
    },
  };
}

/**
 * With `BENCH_PG_STATS=1`: turns on PostgreSQL's function statistics and, when the server
 * stops, prints (to stderr) where the database spent its time per function, for profiling.
 */
async function functionStatistics(brigade: Brigade) {
  const client = new pg.Client({ connectionString: brigade.storage.ownerUrl });
  await client.connect();
  await client.query("alter system set track_functions = 'all'");
  await client.query('select pg_reload_conf()');
  await client.query('select pg_stat_reset()');
  return {
    async report() {
      const { rows } = await client.query(
        `select funcname, calls, round(total_time::numeric, 1) as total_ms,
                round(self_time::numeric, 1) as self_ms,
                round((self_time / greatest(calls, 1))::numeric, 3) as self_ms_per_call
           from pg_stat_user_functions order by self_time desc limit 25`,
      );
      process.stderr.write(`${JSON.stringify(rows, null, 1)}\n`);
      await client.end();
    },
  };
}

/** Sends one JSON request and returns the parsed body (throws on a non-2xx status). */
export async function call<T>(
  url: string,
  options: { method: string; key: string; body?: unknown },
): Promise<T> {
  const response = await fetch(url, {
    method: options.method,
    headers: {
      authorization: `Bearer ${options.key}`,
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${options.method} ${url}: ${response.status} ${text}`);
  return JSON.parse(text) as T;
}

/** Creates a tenant with an admin user and returns the admin's key. */
export async function seedAdmin(url: string): Promise<string> {
  const tenant = await call<{ id: string }>(`${url}/v1/tenants`, {
    method: 'POST',
    key: benchOperatorKey,
    body: { slug: `bench-${Math.random().toString(36).slice(2, 10)}`, name: 'bench' },
  });
  const user = await call<{ id: string }>(`${url}/v1/tenants/${tenant.id}/users`, {
    method: 'POST',
    key: benchOperatorKey,
    body: { role: 'admin' },
  });
  const key = await call<{ secret: string }>(
    `${url}/v1/tenants/${tenant.id}/users/${user.id}/api-keys`,
    {
      method: 'POST',
      key: benchOperatorKey,
      body: { name: 'bench' },
    },
  );
  return key.secret;
}
