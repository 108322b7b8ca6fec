import { Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { retryingConflicts } from './conflict-retry.ts';
import type { DatabaseSchema } from './database-schema.ts';
import { findPrivilegeProblems } from './privilege-check.ts';
import { type DatabaseScope, renderScopeStatement, renderScopeSwitch } from './scope.ts';

/** Renders a value as an escaped SQL literal for {@link Database.readScoped}. */
export function sqlLiteral(value: string | number): string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('not a finite number');
    return String(value);
  }
  return pg.escapeLiteral(value);
}

/** A Kysely handle bound to one scoped transaction. */
export type ScopedDb = Kysely<DatabaseSchema>;

/** Minimal logger the storage layer reports pool errors to. */
export interface StorageLogger {
  warn(object: object, message: string): void;
}

/** The runtime database: every query runs inside {@link Database.withScope}. */
export interface Database {
  /**
   * Runs `work` in one transaction whose row-level-security scope is `scope`. Commits when
   * `work` resolves and rolls back when it throws; the scope ends with the transaction.
   */
  withScope<T>(scope: DatabaseScope, work: (db: ScopedDb) => Promise<T>): Promise<T>;
  /**
   * Runs `statements` inside one scoped transaction in a single round trip (simple protocol:
   * `BEGIN; set_config…; statement…; COMMIT`) and returns each statement's rows; a failing
   * statement rolls the whole transaction back. Made for reads and for hot-path writes whose
   * values are numbers, UUIDs and timestamps (the budget reservation). Statements carry their
   * values inline, so every value must be validated and escaped by the caller (use
   * {@link sqlLiteral}); prefer {@link Database.withScope} for anything else.
   */
  readScoped(
    scope: DatabaseScope,
    statements: readonly string[],
  ): Promise<Record<string, unknown>[][]>;
  /**
   * Runs the statements of several scopes in one transaction and a single round trip (simple
   * protocol: `BEGIN; <scope 1>; statements…; <scope 2>; statements…; COMMIT`), each part
   * under its own row-level-security scope, which replaces the previous part's entirely. Made
   * for writes batched across runs (see runtime/event-batcher.ts); the same rules as
   * {@link Database.readScoped} apply to the inline values. All or nothing: a failing statement
   * rolls every part back.
   */
  writeScopes(
    parts: readonly { readonly scope: DatabaseScope; readonly statements: readonly string[] }[],
  ): Promise<void>;
  /**
   * Runs one statement as a named prepared statement (extended protocol, so its values are
   * parameters and its plan is kept per connection) in its own implicit transaction. Made for
   * the hot-path functions of migration 0014, which set their own row-level-security scope
   * before they read or write; a statement that does not would run with no scope at all.
   */
  callPrepared(
    statement: { readonly name: string; readonly text: string },
    values: readonly unknown[],
  ): Promise<Record<string, unknown>[]>;
  /** Closes the pool; in-flight transactions finish first. */
  close(): Promise<void>;
  /** The underlying pool, for health checks and tests. */
  readonly pool: pg.Pool;
}

/** Options for {@link createDatabase}. */
export interface CreateDatabaseOptions {
  readonly connectionString: string;
  readonly poolSize: number;
  readonly statementTimeoutMs: number;
  readonly logger: StorageLogger;
  readonly applicationName?: string;
}

/** Creates a `pg.Pool` with an error handler (an idle client's error must not crash the process). */
export function createPool(options: CreateDatabaseOptions): pg.Pool {
  const startupOptions = [`-c statement_timeout=${options.statementTimeoutMs}`];
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.poolSize,
    application_name: options.applicationName ?? 'brigade',
    options: startupOptions.join(' '),
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
  });
  // pool.end() resolves before its connections have closed, so an embedded server stopped
  // right after can still terminate them: expected then, not worth a warning.
  pool.on('error', (error) => {
    if (pool.ending) return;
    options.logger.warn({ err: { message: error.message } }, 'idle database client failed');
  });
  pool.on('connect', (client) => {
    preparedStatements(client);
    // The pool listens for errors of idle clients only: a checked-out client whose backend
    // dies (terminated, failover) would emit 'error' to no one and end the process. Its query
    // in flight fails anyway, and the transaction releases it as broken.
    client.on('error', (error) => {
      if (pool.ending) return;
      options.logger.warn({ err: { message: error.message } }, 'database connection failed');
    });
  });
  return pool;
}

/** Distinct statements a connection keeps prepared; later ones run unnamed. */
const maxPreparedPerConnection = 512;

/**
 * Makes every parameterised statement on `client` a named prepared statement, so PostgreSQL
 * parses and plans it once per connection instead of on every execution. Measured (see
 * bench/RESULTS.md): planning the row-level-security queries again each time was most of
 * PostgreSQL's CPU per run. Only `query(text, values)` calls with values are named (what Kysely
 * sends); simple-protocol text (scope statements, {@link Database.readScoped}) is left alone.
 * The names are per connection and bounded, since generated statements (`in (…)` lists of
 * varying length) differ in text.
 */
function preparedStatements(client: pg.PoolClient): void {
  const names = new Map<string, string>();
  /** Set when a table changed under a prepared statement (a migration by a newer version). */
  let stale = false;
  const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
  const prepared = (...args: unknown[]): unknown => {
    const [text, values] = args;
    if (
      stale ||
      typeof text !== 'string' ||
      !Array.isArray(values) ||
      values.length === 0 ||
      args.length > 2
    )
      return query(...args);
    let name = names.get(text);
    if (name === undefined && names.size < maxPreparedPerConnection) {
      name = `brigade_s${names.size}`;
      names.set(text, name);
    }
    if (name === undefined) return query(text, values);
    return query({ name, text, values }).catch((error: unknown) => {
      // 0A000 "cached plan must not change result type": this connection stops preparing
      // (its statement names stay taken); the failing statement's transaction fails once.
      if ((error as { code?: string }).code === '0A000') stale = true;
      throw error;
    });
  };
  client.query = prepared as typeof client.query;
}

/**
 * Sends `text` (a simple-protocol script that opens and commits its own transaction) on one
 * pooled connection and returns every statement's result. On failure the transaction is rolled
 * back before the connection goes back to the pool, or the connection is discarded when that
 * fails or the client stopped waiting (`queryTimeoutMs`, past which pg gives up on the answer).
 */
async function runScript(
  pool: pg.Pool,
  text: string,
  queryTimeoutMs?: number,
): Promise<pg.QueryResult<Record<string, unknown>>[]> {
  const client = await pool.connect();
  let broken = false;
  try {
    // (pg reads `query_timeout` from a query's config; its types do not list it.)
    const query: pg.QueryConfig & { query_timeout?: number } =
      queryTimeoutMs === undefined ? { text } : { text, query_timeout: queryTimeoutMs };
    return (await client.query(query)) as unknown as pg.QueryResult<Record<string, unknown>>[];
  } catch (error) {
    if (error instanceof Error && error.message === 'Query read timeout') broken = true;
    // A failed statement leaves the transaction aborted; end it before reuse.
    else
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
    throw error;
  } finally {
    client.release(broken);
  }
}

/** Creates the runtime {@link Database} on a pool of the runtime role. */
export function createDatabase(options: CreateDatabaseOptions): Database {
  const pool = createPool(options);
  const db = new Kysely<DatabaseSchema>({ dialect: new PostgresDialect({ pool }) });
  async function callPreparedOnce(
    statement: { readonly name: string; readonly text: string },
    values: readonly unknown[],
  ): Promise<Record<string, unknown>[]> {
    // Not pool.query: it destroys the connection on any error, and these calls refuse by
    // raising (queue full, quota used up), so every refusal cost a new connection (a backend
    // started and authenticated) under exactly the load that makes refusals common.
    const client = await pool.connect();
    try {
      const result = await client.query({
        name: statement.name,
        text: statement.text,
        values: values as unknown[],
      });
      client.release();
      return result.rows as Record<string, unknown>[];
    } catch (error) {
      // An error the server reported leaves the connection usable; anything else may not.
      client.release(error instanceof pg.DatabaseError ? undefined : (error as Error));
      throw error;
    }
  }

  return {
    pool,
    async withScope(scope, work) {
      const begin = renderScopeStatement(scope);
      return db.connection().execute(async (connection) => {
        await sql.raw(begin).execute(connection);
        let result: Awaited<ReturnType<typeof work>>;
        try {
          result = await work(connection);
        } catch (error) {
          // A failed ROLLBACK means the connection is broken; pg-pool discards broken clients.
          await sql
            .raw('ROLLBACK')
            .execute(connection)
            .catch(() => undefined);
          throw error;
        }
        try {
          const commit = await sql.raw<{ command?: string }>('COMMIT').execute(connection);
          // PostgreSQL answers COMMIT of a failed transaction with ROLLBACK and no error: work
          // that swallowed an SQL error must not be reported as committed.
          if (commit.rows[0]?.command === 'ROLLBACK') {
            throw new Error('the transaction was rolled back because a statement in it failed');
          }
        } catch (error) {
          await sql
            .raw('ROLLBACK')
            .execute(connection)
            .catch(() => undefined);
          throw error;
        }
        return result;
      });
    },
    async readScoped(scope, statements) {
      const head = renderScopeStatement(scope);
      const results = await runScript(pool, [head, ...statements, 'COMMIT'].join(';\n'));
      // results: BEGIN, [set_config when the scope sets anything], ...statements, COMMIT
      const skip = head === 'BEGIN' ? 1 : 2;
      return results.slice(skip, skip + statements.length).map((result) => result.rows);
    },
    async writeScopes(parts) {
      if (parts.length === 0) return;
      const text = [
        'BEGIN',
        ...parts.flatMap((part) => [renderScopeSwitch(part.scope), ...part.statements]),
        'COMMIT',
      ].join(';\n');
      // A connection that dies silently must not hold every run's events (one write serves
      // them all) until the kernel gives up on it: past the statement timeout the client
      // stops waiting and the connection is discarded.
      await runScript(pool, text, options.statementTimeoutMs + 5_000);
    },
    callPrepared(statement, values) {
      // One statement in a transaction of its own: one PostgreSQL rolled back for a deadlock
      // or a serialisation failure wrote nothing, so it is made again. (A budget settlement
      // that lost a deadlock with a tenant's time-zone change failed a call already paid for;
      // a run's checkpoint, the run.)
      return retryingConflicts(() => callPreparedOnce(statement, values));
    },
    async close() {
      await db.destroy();
      // Kysely ends the pool only once it ran a query itself; the start-up checks use the
      // pool directly, so a process that stops right after them would keep its connection.
      if (!pool.ending) await pool.end();
    },
  };
}

/**
 * Facts about the role a pool runs as, and the login it runs under (a superuser login that
 * merely switched roles could switch back), checked before the server accepts traffic.
 */
export interface RoleFacts {
  readonly name: string;
  readonly superuser: boolean;
  readonly bypassRls: boolean;
  readonly ownedObjects: number;
}

/** Reads the current role's attributes and how many relations it owns. */
export async function readRoleFacts(pool: pg.Pool): Promise<RoleFacts> {
  const result = await pool.query<{
    name: string;
    superuser: boolean;
    bypass_rls: boolean;
    owned: string;
  }>(
    `select current_user as name, r.rolsuper or s.rolsuper as superuser,
            r.rolbypassrls or s.rolbypassrls as bypass_rls,
            (select count(*) from pg_class c where c.relowner = r.oid)
              + (select count(*) from pg_proc p where p.proowner = r.oid)
              + (select count(*) from pg_namespace n where n.nspowner = r.oid) as owned
       from pg_roles r, pg_roles s
      where r.rolname = current_user and s.rolname = session_user`,
  );
  const row = result.rows[0];
  if (row === undefined) throw new Error('cannot read the runtime role');
  return {
    name: row.name,
    superuser: row.superuser,
    bypassRls: row.bypass_rls,
    ownedObjects: Number(row.owned),
  };
}

/**
 * Refuses to run on a runtime role that could bypass row-level security (fail closed,
 * DESIGN.md invariant 3): a superuser, BYPASSRLS, owning anything, a member of a role that
 * could, or holding privileges row-level security does not cover (see privilege-check.ts).
 */
export async function assertLeastPrivilege(pool: pg.Pool): Promise<RoleFacts> {
  const facts = await readRoleFacts(pool);
  const problems: string[] = [];
  if (facts.superuser) problems.push('is a superuser');
  if (facts.bypassRls) problems.push('has BYPASSRLS');
  if (facts.ownedObjects > 0) problems.push(`owns ${facts.ownedObjects} objects`);
  problems.push(...(await findPrivilegeProblems(pool)));
  if (problems.length > 0) {
    throw new Error(
      `the runtime database role "${facts.name}" ${problems.join('; ')}; row-level security would not hold. See docs/database.md.`,
    );
  }
  return facts;
}
