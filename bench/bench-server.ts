import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  return {
    url,
    brigade,
    async stop() {
      await brigade.stop();
      if (directory !== undefined) await rm(directory, { recursive: true, force: true });
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
