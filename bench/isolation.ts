import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig, processEnvironment } from '../src/config/index.ts';
import { openStorage } from '../src/storage/open-storage.ts';
import { renderScopeStatement } from '../src/storage/postgres/scope.ts';
import { cpuMs, machine, percentile, postgresPids, progress } from './support.ts';

/**
 * Cost of row-level security: the same reads and writes on the same tables and data, once as
 * the runtime role inside an RLS scope (`BEGIN; set_config(...)` + policies), once as the
 * owner (a superuser, which bypasses RLS) inside a plain `BEGIN`. Same round trips on both.
 */
interface Workload {
  readonly name: string;
  readonly statement: (tenant: { id: string; userIds: string[] }) => {
    text: string;
    values: unknown[];
  };
}

const tenants = 20;
const usersPerTenant = 500;

const workloads: readonly Workload[] = [
  {
    name: 'read_user',
    statement: (tenant) => ({
      text: `select u.*, m.role from brigade.users u join brigade.memberships m
               on m.tenant_id = u.tenant_id and m.user_id = u.id
             where u.tenant_id = $1 and u.id = $2`,
      values: [tenant.id, tenant.userIds[Math.floor(Math.random() * tenant.userIds.length)]],
    }),
  },
  {
    name: 'list_users',
    statement: (tenant) => ({
      text: `select u.*, m.role from brigade.users u join brigade.memberships m
               on m.tenant_id = u.tenant_id and m.user_id = u.id
             where u.tenant_id = $1 order by u.id limit 50`,
      values: [tenant.id],
    }),
  },
  {
    name: 'write_user',
    statement: (tenant) => ({
      text: `with u as (insert into brigade.users (tenant_id, email) values ($1, $2) returning tenant_id, id)
             insert into brigade.memberships (tenant_id, user_id, role) select tenant_id, id, 'member' from u`,
      values: [tenant.id, `${randomUUID()}@bench.test`],
    }),
  },
];

async function measure(options: {
  pool: pg.Pool;
  begin: (tenantId: string) => string;
  workload: Workload;
  data: { id: string; userIds: string[] }[];
  durationMs: number;
}): Promise<{ ops: number; latencies: number[]; cpu: number }> {
  const concurrency = 4;
  const latencies: number[] = [];
  const pids = [process.pid, ...postgresPids()];
  const cpuBefore = cpuMs(pids);
  const deadline = performance.now() + options.durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const client = await options.pool.connect();
      try {
        while (performance.now() < deadline) {
          const tenant = options.data[Math.floor(Math.random() * options.data.length)];
          if (tenant === undefined) continue;
          const { text, values } = options.workload.statement(tenant);
          const started = performance.now();
          await client.query(options.begin(tenant.id));
          await client.query(text, values);
          await client.query('COMMIT');
          latencies.push(performance.now() - started);
        }
      } finally {
        client.release();
      }
    }),
  );
  const cpu = cpuMs([...pids, ...postgresPids()]) - cpuBefore;
  return { ops: latencies.length, latencies: latencies.sort((a, b) => a - b), cpu };
}

/** Runs the isolation benchmark on the embedded cluster (or DATABASE_URL when set). */
export async function run(quick: boolean): Promise<object> {
  const env = processEnvironment();
  const directory =
    env['DATABASE_URL'] === undefined ? await mkdtemp(join(tmpdir(), 'brigade-bench-')) : undefined;
  if (directory !== undefined) await chmod(directory, 0o755);
  const config = loadConfig({
    file:
      directory === undefined
        ? {}
        : { database: { embedded: { dataDir: join(directory, 'postgres') } } },
    env: { ...env, LOG_LEVEL: 'silent' },
  });
  const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined };
  const storage = await openStorage({ config, logger: quiet });
  const owner = new pg.Pool({ connectionString: storage.ownerUrl, max: 4 });
  try {
    progress(`seeding ${tenants} tenants × ${usersPerTenant} users`);
    const data: { id: string; userIds: string[] }[] = [];
    for (let index = 0; index < tenants; index += 1) {
      const tenant = await owner.query<{ id: string }>(
        `insert into brigade.tenants (slug, name) values ($1, $1) returning id`,
        [`bench-${randomUUID().slice(0, 8)}`],
      );
      const tenantId = tenant.rows[0]?.id ?? '';
      const users = await owner.query<{ id: string }>(
        `with u as (insert into brigade.users (tenant_id, email)
           select $1, 'u' || g || '@bench.test' from generate_series(1, $2) g returning tenant_id, id)
         insert into brigade.memberships (tenant_id, user_id, role) select tenant_id, id, 'member' from u
         returning user_id as id`,
        [tenantId, usersPerTenant],
      );
      data.push({ id: tenantId, userIds: users.rows.map((row) => row.id) });
    }
    await owner.query('analyze');
    const durationMs = quick ? 2_000 : 8_000;
    const rounds = quick ? 2 : 3;
    const results: Record<
      string,
      {
        rls: number[];
        base: number[];
        rlsCpu: number;
        baseCpu: number;
        rlsOps: number;
        baseOps: number;
        rlsLat: number[];
        baseLat: number[];
      }
    > = {};
    for (const workload of workloads) {
      const entry = {
        rls: [] as number[],
        base: [] as number[],
        rlsCpu: 0,
        baseCpu: 0,
        rlsOps: 0,
        baseOps: 0,
        rlsLat: [] as number[],
        baseLat: [] as number[],
      };
      for (let round = 0; round < rounds; round += 1) {
        const base = await measure({
          pool: owner,
          begin: () => 'BEGIN',
          workload,
          data,
          durationMs,
        });
        const rls = await measure({
          pool: storage.database.pool,
          begin: (tenantId) => renderScopeStatement({ tenantId, tenantAdmin: true }),
          workload,
          data,
          durationMs,
        });
        entry.base.push((base.ops * 1000) / durationMs);
        entry.rls.push((rls.ops * 1000) / durationMs);
        entry.baseCpu += base.cpu;
        entry.rlsCpu += rls.cpu;
        entry.baseOps += base.ops;
        entry.rlsOps += rls.ops;
        entry.baseLat.push(percentile(base.latencies, 0.5));
        entry.rlsLat.push(percentile(rls.latencies, 0.5));
        progress(
          `${workload.name} round ${round + 1}: base ${entry.base.at(-1)?.toFixed(0)} ops/s, rls ${entry.rls.at(-1)?.toFixed(0)} ops/s`,
        );
      }
      results[workload.name] = entry;
    }
    const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
    const perWorkload = Object.fromEntries(
      Object.entries(results).map(([name, entry]) => [
        name,
        {
          ops_per_s: sum(entry.rls) / entry.rls.length,
          ops_per_s_baseline: sum(entry.base) / entry.base.length,
          overhead_pct: (sum(entry.base) / sum(entry.rls) - 1) * 100,
          cpu_ms_per_op: entry.rlsCpu / entry.rlsOps,
          cpu_ms_per_op_baseline: entry.baseCpu / entry.baseOps,
          p50_ms: sum(entry.rlsLat) / entry.rlsLat.length,
          p50_ms_baseline: sum(entry.baseLat) / entry.baseLat.length,
        },
      ]),
    );
    const totalRls = sum(Object.values(results).map((entry) => sum(entry.rls)));
    const totalBase = sum(Object.values(results).map((entry) => sum(entry.base)));
    return {
      bench: 'isolation',
      metrics: {
        rls_overhead_pct: Math.round((totalBase / totalRls - 1) * 1000) / 10,
        workloads: perWorkload,
      },
      baseline: {
        description:
          'same statements as the owner (superuser, RLS bypassed) in a plain BEGIN/COMMIT',
      },
      targets: { rls_overhead_pct: 10 },
      machine: machine(),
    };
  } finally {
    await owner.end();
    await storage.close();
    if (directory !== undefined) await rm(directory, { recursive: true, force: true });
  }
}
