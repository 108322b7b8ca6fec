import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseScope } from '../src/storage/postgres/scope.ts';
import {
  type ApiClient,
  apiClient,
  type Created,
  seedTenant,
  seedUser,
} from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

interface SeededTenant {
  readonly id: string;
  readonly ownerId: string;
  readonly memberId: string;
}

interface BrigadeTable {
  readonly name: string;
  readonly tenantKeyed: boolean;
}

/**
 * Tables the runtime role may read without a scope, on purpose. None: even operator key
 * hashes are visible only to whoever presents the matching secret. Any entry added here must
 * hold no tenant data (asserted below).
 */
const readableWithoutScope: string[] = [];

/** Tables the seeding below fills for both tenants, so isolation checks on them are not vacuous. */
const seededTables = [
  'agents',
  'api_keys',
  'audit_events',
  'audit_heads',
  'memberships',
  'messages',
  'oidc_providers',
  'run_events',
  'run_steps',
  'runs',
  'tenants',
  'threads',
  'users',
];

let server: TestServer;
let tables: BrigadeTable[];
const tenants: SeededTenant[] = [];

async function waitForRun(client: ApiClient, path: string): Promise<string> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const run = await client.get<{ status: string }>(path);
    if (['completed', 'failed', 'cancelled', 'expired'].includes(run.body.status)) {
      return run.body.status;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`run ${path} did not finish`);
}

/** Seeds one tenant through the HTTP API: users, keys, an OIDC provider, an agent and a run. */
async function seedThroughApi(operator: ApiClient, slug: string): Promise<SeededTenant> {
  const id = await seedTenant(operator, slug);
  const owner = await seedUser(operator, { tenantId: id, role: 'owner' });
  const member = await seedUser(operator, { tenantId: id, role: 'member' });
  const provider = await operator.post(`/v1/tenants/${id}/oidc-providers`, {
    name: 'corporate',
    issuer: `https://idp.${slug}.test`,
    audience: 'brigade',
    jwksUrl: `https://idp.${slug}.test/jwks`,
  });
  expect(provider.status).toBe(201);
  const agent = await apiClient(server.url, owner.secret).post<Created>('/v1/agents', {
    name: 'helper',
  });
  expect(agent.status).toBe(201);
  const memberClient = apiClient(server.url, member.secret);
  const thread = await memberClient.post<Created>('/v1/threads', { title: slug });
  expect(thread.status).toBe(201);
  const run = await memberClient.post<Created>(`/v1/threads/${thread.body.id}/runs`, {
    agentId: agent.body.id,
    input: `hello from ${slug}`,
  });
  expect(run.status).toBe(201);
  const path = `/v1/threads/${thread.body.id}/runs/${run.body.id}`;
  expect(await waitForRun(memberClient, path)).toBe('completed');
  return { id, ownerId: owner.userId, memberId: member.userId };
}

function qualified(table: string): string {
  return `brigade.${pg.escapeIdentifier(table)}`;
}

beforeAll(async () => {
  server = await startTestServer({
    models: { local: { tokenDelayMs: 0 } },
    runs: { pollIntervalMs: 50 },
  });
  const operator = apiClient(server.url, testOperatorKey);
  tenants.push(await seedThroughApi(operator, 'alpha'));
  tenants.push(await seedThroughApi(operator, 'beta'));
  // The environment operator key is never stored; store one hash so operator_keys is not empty.
  const owner = new pg.Client({ connectionString: server.database.url });
  await owner.connect();
  try {
    await owner.query(
      `insert into brigade.operator_keys (key_hash, source) values ($1, 'environment')`,
      [randomBytes(32)],
    );
  } finally {
    await owner.end();
  }
  const result = await server.brigade.storage.database.pool.query<BrigadeTable>(
    `select c.relname as name,
            exists (select from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id'
                     and not a.attisdropped) as "tenantKeyed"
       from pg_class c
      where c.relnamespace = 'brigade'::regnamespace and c.relkind in ('r', 'p')
        and has_table_privilege(c.oid, 'SELECT')
      order by 1`,
  );
  tables = result.rows;
});

afterAll(async () => {
  await server?.stop();
});

/** Counts the rows of every readable table through `query`; returns the tables with rows. */
async function tablesWithRows(
  query: (text: string) => Promise<{ rows: Array<{ count: number }> }>,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const { name } of tables) {
    const result = await query(`select count(*)::int as count from ${qualified(name)}`);
    const count = result.rows[0]?.count ?? 0;
    if (count > 0) counts[name] = count;
  }
  return counts;
}

/** Reads the tenant ids of every row of every tenant-keyed table (and `tenants.id`) in `scope`. */
async function tenantIdsVisibleIn(scope: DatabaseScope): Promise<Map<string, string[]>> {
  return server.brigade.storage.database.withScope(scope, async (db) => {
    const visible = new Map<string, string[]>();
    for (const { name, tenantKeyed } of tables) {
      if (!tenantKeyed && name !== 'tenants') continue;
      const column = name === 'tenants' ? 'id' : 'tenant_id';
      const result = await sql<{ tenant: string }>`
        select ${sql.ref(column)}::text as tenant from ${sql.table(`brigade.${name}`)}`.execute(db);
      visible.set(
        name,
        result.rows.map((row) => row.tenant),
      );
    }
    return visible;
  });
}

describe('a runtime connection without a scope', () => {
  it('can read the seeded tables at all, so the zero counts below mean something', () => {
    const names = tables.map((table) => table.name);
    expect(names).toEqual(expect.arrayContaining([...seededTables, ...readableWithoutScope]));
    expect(names).not.toContain('kysely_migration');
  });

  it('reads zero rows from every table outside a transaction, on every pooled connection', async () => {
    const pool = server.brigade.storage.database.pool;
    const clients = await Promise.all(
      Array.from({ length: Math.max(pool.totalCount, 1) }, () => pool.connect()),
    );
    try {
      for (const client of clients) {
        const counts = await tablesWithRows((text) => client.query<{ count: number }>(text));
        expect(Object.keys(counts)).toEqual(readableWithoutScope);
      }
    } finally {
      for (const client of clients) client.release();
    }
  });

  it('reads zero rows from every table in a transaction whose scope names no tenant', async () => {
    const scopes: DatabaseScope[] = [
      {},
      { userId: tenants[0]!.memberId },
      { tenantAdmin: true },
      { userId: tenants[1]!.ownerId, tenantAdmin: true },
    ];
    for (const scope of scopes) {
      const counts = await server.brigade.storage.database.withScope(scope, (db) =>
        tablesWithRows((text) => sql.raw<{ count: number }>(text).execute(db)),
      );
      expect(Object.keys(counts), JSON.stringify(scope)).toEqual(readableWithoutScope);
    }
  });

  it('exempts only tables that hold no tenant or user data', () => {
    for (const name of readableWithoutScope) {
      expect(tables.find((table) => table.name === name)?.tenantKeyed, name).toBe(false);
    }
  });
});

describe('a runtime transaction scoped to one tenant', () => {
  it('sees only that tenant’s rows in every tenant-keyed table', async () => {
    for (const tenant of tenants) {
      const admin = await tenantIdsVisibleIn({
        tenantId: tenant.id,
        userId: tenant.ownerId,
        tenantAdmin: true,
      });
      const member = await tenantIdsVisibleIn({ tenantId: tenant.id, userId: tenant.memberId });
      const seen = new Set<string>();
      for (const visible of [admin, member]) {
        for (const [table, tenantIds] of visible) {
          expect(new Set(tenantIds), `${table} for ${tenant.id}`).toEqual(
            new Set(tenantIds.length === 0 ? [] : [tenant.id]),
          );
          if (tenantIds.length > 0) seen.add(table);
        }
      }
      expect([...seen].sort(), 'tables with rows of this tenant').toEqual(
        expect.arrayContaining(seededTables),
      );
    }
  });

  it('rejects inserting a user into another tenant, even as that tenant’s admin', async () => {
    const [alpha, beta] = tenants;
    const insert = server.brigade.storage.database.withScope(
      { tenantId: alpha!.id, userId: alpha!.ownerId, tenantAdmin: true },
      (db) =>
        db
          .insertInto('brigade.users')
          .values({ tenant_id: beta!.id, email: 'intruder@beta.test' })
          .execute(),
    );
    await expect(insert).rejects.toMatchObject({
      code: '42501',
      message: expect.stringMatching(/row-level security policy for table "users"/),
    });
  });

  it('rejects moving its own user into another tenant', async () => {
    const [alpha, beta] = tenants;
    const move = server.brigade.storage.database.withScope(
      { tenantId: alpha!.id, userId: alpha!.ownerId, tenantAdmin: true },
      (db) =>
        db
          .updateTable('brigade.users')
          .set({ tenant_id: beta!.id })
          .where('id', '=', alpha!.memberId)
          .execute(),
    );
    await expect(move).rejects.toMatchObject({ code: '42501' });
  });

  it('changes no row of another tenant when it updates or deletes by that tenant’s id', async () => {
    const [alpha, beta] = tenants;
    const affected = await server.brigade.storage.database.withScope(
      { tenantId: alpha!.id, userId: alpha!.ownerId, tenantAdmin: true },
      async (db) => {
        const updated = await db
          .updateTable('brigade.users')
          .set({ display_name: 'hijacked' })
          .where('tenant_id', '=', beta!.id)
          .executeTakeFirst();
        const deleted = await db
          .deleteFrom('brigade.users')
          .where('tenant_id', '=', beta!.id)
          .executeTakeFirst();
        return [updated.numUpdatedRows, deleted.numDeletedRows];
      },
    );
    expect(affected).toEqual([0n, 0n]);
    const betaUsers = await tenantIdsVisibleIn({ tenantId: beta!.id, tenantAdmin: true });
    expect(betaUsers.get('users')).toHaveLength(2);
  });
});

describe('the audit log', () => {
  const statements = [
    `update brigade.audit_events set reason = 'rewritten'`,
    'delete from brigade.audit_events',
    'truncate brigade.audit_events',
  ];

  it('cannot be updated, deleted or truncated by the runtime role, even in the tenant’s scope', async () => {
    const [alpha] = tenants;
    for (const statement of statements) {
      const attempt = server.brigade.storage.database.withScope(
        { tenantId: alpha!.id, userId: alpha!.ownerId, tenantAdmin: true },
        (db) => sql.raw(statement).execute(db),
      );
      await expect(attempt, statement).rejects.toMatchObject({
        code: '42501',
        message: 'permission denied for table audit_events',
      });
    }
  });

  it('cannot be updated or deleted by the runtime role without a scope', async () => {
    for (const statement of statements) {
      await expect(
        server.brigade.storage.database.pool.query(statement),
        statement,
      ).rejects.toMatchObject({
        code: '42501',
        message: 'permission denied for table audit_events',
      });
    }
  });
});
