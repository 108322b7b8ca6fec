import { createHmac } from 'node:crypto';
import { Kysely, PostgresDialect, sql } from 'kysely';
import type pg from 'pg';
import type { Config } from '../config/index.ts';
import { type EmbeddedServer, startEmbeddedServer } from './embedded/embedded-server.ts';
import { migrateToLatest, pendingMigrations } from './migrations/migrate.ts';
import {
  assertLeastPrivilege,
  createDatabase,
  createPool,
  type Database,
  type RoleFacts,
} from './postgres/database.ts';
import { revokeExcessPrivileges } from './postgres/privilege-check.ts';

/** Logger shape the storage start-up needs. */
export interface StorageStartLogger {
  debug(object: object, message: string): void;
  info(object: object, message: string): void;
  warn(object: object, message: string): void;
}

/** Everything storage start-up produced; `close` stops it in the right order. */
export interface Storage {
  readonly database: Database;
  readonly runtimeRole: RoleFacts;
  /** Owner connection URL (migrations, bootstrap); never handed to request handling. */
  readonly ownerUrl: string;
  readonly embedded: EmbeddedServer | undefined;
  readonly appliedMigrations: readonly string[];
  /**
   * A small pool of its own for the run scheduler (claims, heartbeats): claims must not wait
   * behind request traffic for a connection of the main pool, or an overloaded API would
   * starve every tenant's queue (the fairness benchmark).
   */
  readonly schedulerDatabase: Database;
  /** How to open extra runtime-role connections (LISTEN). */
  readonly runtimeConnection: { readonly url: string };
  close(): Promise<void>;
}

/** Options for {@link openStorage}. */
export interface OpenStorageOptions {
  readonly config: Config;
  readonly logger: StorageStartLogger;
  /** Apply pending migrations (defaults to `config.database.migrateOnStart`). */
  readonly migrate?: boolean;
  /** Share an embedded cluster another live process already runs (CLI admin commands). */
  readonly shareRunning?: boolean;
}

const embeddedDatabaseName = 'brigade';

async function ensureEmbeddedDatabase(server: EmbeddedServer): Promise<void> {
  const admin = createPool({
    connectionString: server.ownerUrl,
    poolSize: 1,
    statementTimeoutMs: 60_000,
    logger: { warn: () => undefined },
  });
  try {
    const exists = await admin.query('select 1 from pg_database where datname = $1', [
      embeddedDatabaseName,
    ]);
    if (exists.rowCount === 0) await admin.query(`create database ${embeddedDatabaseName}`);
  } finally {
    await admin.end();
  }
}

function isDuplicate(error: unknown): boolean {
  const code = (error as { code?: string }).code;
  return code === '42710' || code === '23505';
}

/**
 * Creates the runtime role when it is missing (the owner needs CREATEROLE for that; on a
 * managed server create it by hand as docs/database.md shows) and sets
 * its login password when Brigade manages it.
 */
export async function ensureRuntimeRole(
  owner: Kysely<unknown>,
  options: {
    readonly role: string;
    readonly password: string | undefined;
  },
): Promise<void> {
  const role = sql.id(options.role);
  const found = await sql<{
    ok: number;
  }>`select 1 as ok from pg_roles where rolname = ${options.role}`.execute(owner);
  if (found.rows.length === 0) {
    try {
      await sql`create role ${role} nosuperuser nobypassrls nocreatedb nocreaterole noinherit`.execute(
        owner,
      );
    } catch (error) {
      if (!isDuplicate(error)) {
        throw new Error(
          `cannot create the runtime role "${options.role}" (${(error as Error).message}); create it as docs/database.md describes`,
          { cause: error },
        );
      }
    }
  }
  const password = options.password;
  if (password !== undefined) {
    await retryConcurrentRoleUpdate(() =>
      sql`alter role ${role} login password ${sql.lit(password)}`.execute(owner),
    ).catch((error: unknown) => {
      throw new Error(
        `cannot set the login password of the runtime role "${options.role}" (${(error as Error).message}): give the owner in DATABASE_URL CREATEROLE, or log the runtime role in yourself with DATABASE_RUNTIME_URL (docs/database.md)`,
        { cause: error },
      );
    });
  }
}

/**
 * Roles are cluster-wide: processes migrating different databases of one cluster at once can
 * collide on the same role row ("tuple concurrently updated"); such a collision is retried.
 */
async function retryConcurrentRoleUpdate(work: () => Promise<unknown>): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await work();
      return;
    } catch (error) {
      const message = (error as Error).message;
      if (attempt >= 8 || !/concurrently/.test(message)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 80));
    }
  }
}

/**
 * The runtime role's password when Brigade manages it: an HMAC of the owner's credentials and
 * server (not the database name, since roles are cluster-wide), so every process that knows
 * DATABASE_URL derives the same value and nobody else can.
 */
export function deriveRuntimePassword(ownerUrl: string): string {
  const url = new URL(ownerUrl);
  const material = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}@${url.hostname}:${url.port}`;
  return createHmac('sha256', material).update('brigade runtime role v1').digest('base64url');
}

/**
 * Starts the embedded cluster or connects to the external server, creates the runtime role,
 * applies migrations, and opens the runtime pool after checking the role cannot bypass RLS.
 */
export async function openStorage(options: OpenStorageOptions): Promise<Storage> {
  const { config, logger } = options;
  const mode = config.database.mode;
  const runtimeRoleName = config.database.runtimeRole;
  let embedded: EmbeddedServer | undefined;
  let ownerUrl: string;
  let runtimeUrl: string;
  let runtimePassword: string | undefined;
  if (mode.kind === 'embedded') {
    embedded = await startEmbeddedServer({
      dataDir: mode.dataDir,
      port: mode.port,
      logger,
      shareRunning: options.shareRunning ?? false,
    });
    await ensureEmbeddedDatabase(embedded);
    ownerUrl = embedded.urlFor({ database: embeddedDatabaseName });
    runtimePassword = embedded.runtimePassword;
    runtimeUrl = embedded.urlFor({
      database: embeddedDatabaseName,
      user: runtimeRoleName,
      password: runtimePassword,
    });
  } else if (mode.runtimeUrl !== undefined) {
    ownerUrl = mode.ownerUrl;
    runtimeUrl = mode.runtimeUrl;
  } else {
    // No runtime URL: Brigade manages the runtime login itself, with a password derived from
    // the owner's credentials (every process with the same DATABASE_URL derives the same one).
    ownerUrl = mode.ownerUrl;
    runtimePassword = deriveRuntimePassword(mode.ownerUrl);
    const url = new URL(mode.ownerUrl);
    url.username = encodeURIComponent(runtimeRoleName);
    url.password = encodeURIComponent(runtimePassword);
    runtimeUrl = url.toString();
  }
  const ownerPool: pg.Pool = createPool({
    connectionString: ownerUrl,
    poolSize: 2,
    statementTimeoutMs: 300_000,
    logger,
    applicationName: 'brigade-owner',
  });
  const owner = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: ownerPool }) });
  let database: Database | undefined;
  let schedulerDatabase: Database | undefined;
  try {
    let appliedMigrations: readonly string[] = [];
    if (options.migrate ?? config.database.migrateOnStart) {
      if (mode.kind === 'embedded' || mode.runtimeUrl === undefined) {
        await ensureRuntimeRole(owner, {
          role: runtimeRoleName,
          password: runtimePassword,
        });
      }
      appliedMigrations = (await migrateToLatest(owner, { runtimeRole: runtimeRoleName })).applied;
      await revokeExcessPrivileges(owner, runtimeRoleName);
      if (appliedMigrations.length > 0)
        logger.info({ applied: appliedMigrations }, 'migrations applied');
    } else {
      const pending = await pendingMigrations(owner, { runtimeRole: runtimeRoleName });
      if (pending.length > 0)
        throw new Error(
          `the database schema is behind this version of Brigade: ${pending.length} migration(s) not applied (the first: ${pending[0]}); run \`brigade migrate\` first, or start with database.migrateOnStart`,
        );
    }
    database = createDatabase({
      connectionString: runtimeUrl,
      poolSize: config.database.poolSize,
      statementTimeoutMs: config.database.statementTimeoutMs,
      logger,
    });
    const runtimeRole = await assertLeastPrivilege(database.pool);
    await assertRuntimeLogin(database.pool, runtimeRoleName);
    const opened = database;
    schedulerDatabase = createDatabase({
      connectionString: runtimeUrl,
      poolSize: 2,
      statementTimeoutMs: config.database.statementTimeoutMs,
      logger,
      applicationName: 'brigade-scheduler',
    });
    const scheduling = schedulerDatabase;
    return {
      database: opened,
      schedulerDatabase: scheduling,
      runtimeRole,
      ownerUrl,
      embedded,
      appliedMigrations,
      runtimeConnection: { url: runtimeUrl },
      async close() {
        await scheduling.close();
        await opened.close();
        await embedded?.stop();
      },
    };
  } catch (error) {
    await schedulerDatabase?.close().catch(() => undefined);
    await database?.close().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    throw error;
  } finally {
    await owner.destroy();
  }
}

/** Runs `work` with a short-lived owner connection (migrations, bootstrap, tests). */
export async function withOwnerDb<T>(
  ownerUrl: string,
  work: (owner: Kysely<unknown>) => Promise<T>,
): Promise<T> {
  const pool = createPool({
    connectionString: ownerUrl,
    poolSize: 1,
    statementTimeoutMs: 300_000,
    logger: { warn: () => undefined },
    applicationName: 'brigade-owner',
  });
  const owner = new Kysely<unknown>({ dialect: new PostgresDialect({ pool }) });
  try {
    return await work(owner);
  } finally {
    await owner.destroy();
  }
}

/**
 * The runtime connection must act as `database.runtimeRole` (or a role that inherits it): the
 * migrations grant it the runtime's privileges and the row-level security policies are its.
 * A `DATABASE_RUNTIME_URL` logging in as another role would otherwise start and then find
 * nothing (every query refused, or answered as another role's).
 */
async function assertRuntimeLogin(pool: pg.Pool, role: string): Promise<void> {
  const { rows } = await pool.query<{ login: string; inherits: boolean | null }>(
    `select current_user as login,
            (select pg_has_role(current_user, oid, 'USAGE') from pg_roles where rolname = $1) as inherits`,
    [role],
  );
  const row = rows[0];
  if (row === undefined || row.inherits === true) return;
  throw new Error(
    `the runtime database connection logs in as "${row.login}", but database.runtimeRole is "${role}"${row.inherits === null ? ' (no such role)' : ''}: the migrations grant the runtime's privileges to "${role}"; set database.runtimeRole to "${row.login}", or log in as "${role}" (docs/database.md)`,
  );
}
