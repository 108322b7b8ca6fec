import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSecret } from '../src/domain/identity/api-key-secret.ts';
import { createDatabase, type Database, type ScopedDb } from '../src/storage/postgres/database.ts';
import type { DatabaseScope } from '../src/storage/postgres/scope.ts';
import { apiClient, seedTenant, seedUser } from './support/api-client.ts';
import { startTestServer, type TestServer, testOperatorKey } from './support/test-brigade.ts';

/** What one transaction saw: its connection, its scope settings and the tenants of its rows. */
interface Observation {
  readonly pid: number;
  readonly settings: Record<string, string>;
  readonly tenantIds: string[];
}

interface Tenant {
  readonly id: string;
  readonly ownerId: string;
  readonly keyHash: string;
}

const settingNames = [
  'tenant_id',
  'user_id',
  'operator',
  'tenant_admin',
  'auth_key_hash',
  'auth_issuer',
  'scheduler',
  'tenant_queue',
] as const;

const noSettings = Object.fromEntries(settingNames.map((name) => [name, '']));

const backendPid = { name: 'test_backend_pid', text: 'select pg_backend_pid() as pid' };
/** A server-side error, as create_run's refusals (queue full, quota) are. */
const refusal = { name: 'test_refusal', text: 'select 1 / $1::int as quotient' };

let server: TestServer;
let tenants: Tenant[];
/** Runtime databases of pool size 1, 2 and 3 on the test database. */
let databases: Database[];

/** The settings `scope` must produce inside its transaction (and nothing else). */
function expectedSettings(scope: DatabaseScope): Record<string, string> {
  return {
    tenant_id: scope.tenantId ?? '',
    user_id: scope.userId ?? '',
    operator: scope.operator === true ? 'on' : '',
    tenant_admin: scope.tenantAdmin === true ? 'on' : '',
    auth_key_hash: scope.authKeyHash ?? '',
    auth_issuer: scope.authIssuer ?? '',
    scheduler: scope.scheduler === true ? 'on' : '',
    tenant_queue: scope.tenantQueue === true ? 'on' : '',
  };
}

/** Reads the scope settings and the tenant of every row the scope can see in identity tables. */
async function observe(db: ScopedDb): Promise<Observation> {
  const columns = settingNames.map(
    (name) => `coalesce(current_setting('brigade.${name}', true), '') as ${name}`,
  );
  const settings = await sql
    .raw<Record<string, string> & { pid: number }>(
      `select pg_backend_pid() as pid, ${columns.join(', ')}`,
    )
    .execute(db);
  const rows = await sql<{ tenant: string }>`
    select id::text as tenant from brigade.tenants
    union all select tenant_id::text from brigade.users
    union all select tenant_id::text from brigade.memberships
    union all select tenant_id::text from brigade.api_keys
    union all select tenant_id::text from brigade.audit_events
    union all select tenant_id::text from brigade.audit_heads`.execute(db);
  const { pid, ...values } = settings.rows[0] ?? { pid: 0 };
  return { pid, settings: values, tenantIds: rows.rows.map((row) => row.tenant) };
}

/** A read under `scope` must see exactly its own settings and only its own tenant's rows. */
async function scopedRead(database: Database, scope: DatabaseScope): Promise<Observation> {
  const seen = await database.withScope(scope, observe);
  expect(seen.settings).toEqual(expectedSettings(scope));
  if (scope.tenantId === undefined) {
    expect(seen.tenantIds).toEqual([]);
  } else {
    expect(seen.tenantIds.length).toBeGreaterThan(0);
    expect(new Set(seen.tenantIds)).toEqual(new Set([scope.tenantId]));
  }
  return seen;
}

const unscoped: DatabaseScope = {};

/** A scope that sets every setting there is, so any leak of it would show. */
function everything(tenant: Tenant): DatabaseScope {
  return {
    tenantId: tenant.id,
    userId: tenant.ownerId,
    operator: true,
    tenantAdmin: true,
    authKeyHash: tenant.keyHash,
    authIssuer: 'https://leaky.example',
    scheduler: true,
    tenantQueue: true,
  };
}

/**
 * How a transaction ends: it commits, throws in JavaScript, aborts in SQL, violates a
 * constraint, or swallows an SQL error (COMMIT then answers ROLLBACK).
 */
type Ending = 'commit' | 'throw' | 'abort' | 'violate' | 'swallow';

/** Runs a transaction under `scope` that confirms its settings, then ends as `ending` says. */
async function endTransaction(
  database: Database,
  options: { readonly scope: DatabaseScope; readonly ending: Ending },
): Promise<void> {
  const { scope, ending } = options;
  const attempt = database.withScope(scope, async (db) => {
    expect((await observe(db)).settings).toEqual(expectedSettings(scope));
    if (ending === 'commit') return;
    if (ending === 'throw') throw new Error('work failed');
    if (ending === 'violate') {
      await sql`insert into brigade.users (tenant_id, status) values (${scope.tenantId}, 'bogus')`.execute(
        db,
      );
    }
    if (ending === 'swallow') {
      // The transaction is aborted; COMMIT then answers ROLLBACK.
      await sql`select 1 / 0`.execute(db).catch(() => undefined);
      return;
    }
    await sql`select 1 / 0`.execute(db);
  });
  if (ending === 'commit') {
    await attempt;
    return;
  }
  const expected = {
    // withScope reports the silent rollback instead of pretending the work committed.
    swallow: { message: 'the transaction was rolled back because a statement in it failed' },
    throw: { message: 'work failed' },
    abort: { code: '22012' },
    violate: { code: '23514' },
  }[ending];
  await expect(attempt).rejects.toMatchObject(expected);
}

beforeAll(async () => {
  server = await startTestServer();
  const operator = apiClient(server.url, testOperatorKey);
  tenants = [];
  for (const slug of ['alpha', 'beta']) {
    const id = await seedTenant(operator, slug);
    const owner = await seedUser(operator, { tenantId: id, role: 'owner' });
    tenants.push({ id, ownerId: owner.userId, keyHash: hashSecret(owner.secret).toString('hex') });
  }
  databases = [1, 2, 3].map((poolSize) =>
    createDatabase({
      connectionString: server.brigade.storage.runtimeConnection.url,
      poolSize,
      statementTimeoutMs: 10_000,
      logger: { warn: () => undefined },
      applicationName: `brigade-test-pool-${poolSize}`,
    }),
  );
});

afterAll(async () => {
  for (const database of databases ?? []) await database.close();
  await server?.stop();
});

describe('a pooled connection reused by the next transaction', () => {
  it('runs every transaction of a pool of size 1 on the same connection as brigade_app', async () => {
    const single = databases[0]!;
    const first = await scopedRead(single, unscoped);
    const second = await scopedRead(single, { tenantId: tenants[0]!.id, tenantAdmin: true });
    expect(second.pid).toBe(first.pid);
    const role = await single.withScope(unscoped, (db) =>
      sql<{ name: string }>`select current_user as name`.execute(db),
    );
    expect(role.rows).toEqual([{ name: 'brigade_app' }]);
  });

  it('forgets a committed scope before the next transaction', async () => {
    const single = databases[0]!;
    const scope = everything(tenants[0]!);
    const scoped = await single.withScope(scope, observe);
    expect(scoped.settings).toEqual(expectedSettings(scope));
    // As the operator it saw both tenants, so a leak of this scope would be visible.
    expect(new Set(scoped.tenantIds)).toEqual(new Set(tenants.map((tenant) => tenant.id)));
    const next = await scopedRead(single, unscoped);
    expect(next.pid).toBe(scoped.pid);
    expect(next.settings).toEqual(noSettings);
  });

  it('forgets the scope after work throws a JavaScript error', async () => {
    const single = databases[0]!;
    await endTransaction(single, { scope: everything(tenants[1]!), ending: 'throw' });
    expect((await scopedRead(single, unscoped)).tenantIds).toEqual([]);
  });

  it('forgets the scope after a SQL error aborts the transaction', async () => {
    const single = databases[0]!;
    await endTransaction(single, { scope: everything(tenants[0]!), ending: 'abort' });
    expect((await scopedRead(single, unscoped)).tenantIds).toEqual([]);
  });

  it('forgets the scope after a statement violates a constraint', async () => {
    const single = databases[0]!;
    await endTransaction(single, { scope: everything(tenants[1]!), ending: 'violate' });
    expect((await scopedRead(single, unscoped)).tenantIds).toEqual([]);
  });

  it('forgets the scope when work swallows a SQL error and the commit becomes a rollback', async () => {
    const single = databases[0]!;
    await endTransaction(single, { scope: everything(tenants[0]!), ending: 'swallow' });
    expect((await scopedRead(single, unscoped)).tenantIds).toEqual([]);
  });

  it('does not carry one tenant’s scope into the next tenant’s transaction', async () => {
    const single = databases[0]!;
    await endTransaction(single, { scope: everything(tenants[0]!), ending: 'commit' });
    await scopedRead(single, { tenantId: tenants[1]!.id, userId: tenants[1]!.ownerId });
  });
});

type Operation =
  | { readonly kind: 'read'; readonly tenant: number | undefined; readonly admin: boolean }
  | { readonly kind: 'end'; readonly tenant: number; readonly ending: Ending };

const operationArbitrary: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({
    kind: fc.constant('read' as const),
    tenant: fc.constantFrom(0, 1, undefined),
    admin: fc.boolean(),
  }),
  fc.record({
    kind: fc.constant('end' as const),
    tenant: fc.constantFrom(0, 1),
    ending: fc.constantFrom<Ending>('commit', 'throw', 'abort', 'violate', 'swallow'),
  }),
);

async function runOperation(database: Database, operation: Operation): Promise<void> {
  if (operation.kind === 'end') {
    const scope = everything(tenants[operation.tenant]!);
    await endTransaction(database, { scope, ending: operation.ending });
    return;
  }
  const tenant = operation.tenant === undefined ? undefined : tenants[operation.tenant]!;
  const scope: DatabaseScope =
    tenant === undefined
      ? unscoped
      : { tenantId: tenant.id, userId: tenant.ownerId, tenantAdmin: operation.admin };
  await scopedRead(database, scope);
}

describe('scopes under a random mix of transactions', () => {
  it('shows every read only its own tenant’s rows, sequentially and concurrently', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          pool: fc.constantFrom(0, 1, 2),
          concurrent: fc.boolean(),
          operations: fc.array(operationArbitrary, { minLength: 1, maxLength: 12 }),
        }),
        async ({ pool, concurrent, operations }) => {
          const database = databases[pool]!;
          if (concurrent) {
            await Promise.all(operations.map((operation) => runOperation(database, operation)));
          } else {
            for (const operation of operations) await runOperation(database, operation);
          }
          // Afterwards every connection of the pool is clean.
          await Promise.all([0, 1, 2].map(() => scopedRead(database, unscoped)));
        },
      ),
      { numRuns: 30 },
    );
  });
});

describe('single-round-trip scoped reads', () => {
  it('see nothing without a scope, and leave no scope behind after a failing statement', async () => {
    const single = databases[0]!;
    const [none = [], answer = []] = await single.readScoped({}, [
      'select id from brigade.users',
      'select 42 as answer',
    ]);
    expect(none).toEqual([]);
    expect(answer).toEqual([{ answer: 42 }]);
    await expect(single.readScoped(everything(tenants[0]!), ['select 1/0'])).rejects.toThrow();
    const after = await scopedRead(single, unscoped);
    expect(after.settings).toEqual(noSettings);
    expect(after.tenantIds).toEqual([]);
    const [own = []] = await single.readScoped({ tenantId: tenants[1]!.id, tenantAdmin: true }, [
      'select distinct tenant_id from brigade.users',
    ]);
    expect(own).toEqual([{ tenant_id: tenants[1]!.id }]);
  });
});

describe('prepared calls that refuse by raising', () => {
  it('keep their connection: a refusal does not cost a new backend', async () => {
    const single = databases[0]!;
    const pidOf = async () =>
      Number((await single.callPrepared(backendPid, []))[0]?.['pid'] ?? Number.NaN);
    const before = await pidOf();
    for (let attempt = 0; attempt < 5; attempt += 1) {
      await expect(single.callPrepared(refusal, [0])).rejects.toMatchObject({ code: '22012' });
    }
    expect(await single.callPrepared(refusal, [1])).toEqual([{ quotient: 1 }]);
    expect(await pidOf()).toBe(before);
    expect(single.pool.totalCount).toBe(1);
  });
});

describe('the runtime login', () => {
  it('is the runtime role itself, not a superuser that switched roles', async () => {
    const facts = await server.brigade.storage.database.pool.query<{
      session: string;
      current: string;
    }>('select session_user as session, current_user as current');
    expect(facts.rows).toEqual([{ session: 'brigade_app', current: 'brigade_app' }]);
  });
});
