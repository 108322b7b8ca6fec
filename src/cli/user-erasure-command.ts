import type { Redis } from 'ioredis';
import { composeDataRights } from '../compose-data-rights.ts';
import type { Config } from '../config/index.ts';
import { AppError, NotFoundError } from '../domain/errors.ts';
import type { IdentityService } from '../domain/identity/identity-service.ts';
import type { Principal } from '../domain/identity/principal.ts';
import { createResponseCacheStore } from '../gateway/response-cache-store.ts';
import type { Logger } from '../observability/index.ts';
import { createRedisClient } from '../runtime/redis-client.ts';
import { createRunSignals } from '../runtime/run-signals.ts';
import { encodeMcpStdioTarget } from '../runtime/tools/mcp-stdio-closer.ts';
import type { Storage } from '../storage/open-storage.ts';
import { cancelRunsOf } from '../storage/runs/run-cancellation.ts';
import { resolveTenant, resolveUser } from './admin-commands.ts';
import { type CliIo, UsageError } from './cli-output.ts';
import { required } from './usage-command.ts';

const operator: Principal = { kind: 'operator' };

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Longest wait for a configured Redis to accept commands before the erasure starts. */
const redisReadyTimeoutMs = 3_000;

/** Options of {@link deleteUserCommand}. */
export interface DeleteUserCommandOptions {
  readonly config: Config;
  readonly storage: Storage;
  readonly identity: IdentityService;
  readonly flags: Readonly<Record<string, string | boolean | undefined>>;
  readonly io: CliIo;
  readonly logger: Logger;
}

/** `--reason`, recorded in the audit log: 1 to 500 characters, as the API takes it. */
function reasonOf(value: string | boolean | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length < 1 || value.length > 500)
    throw new UsageError('--reason must be 1 to 500 characters');
  return value;
}

/**
 * `brigade users delete`: erases a user and everything that is theirs as the operator, through
 * the same data-rights service as `DELETE /v1/tenants/{tenantId}/users/{userId}` (`deleteUser`).
 * The erasure is synchronous: when the command prints `deleted` it is done. Refused without
 * `--yes`, since it cannot be undone.
 */
export async function deleteUserCommand(options: DeleteUserCommandOptions): Promise<void> {
  const { flags, io, storage, identity } = options;
  const tenantReference = required(flags['tenant'], 'tenant');
  const userReference = required(flags['user'], 'user');
  if (!uuidPattern.test(userReference) && !userReference.includes('@'))
    throw new UsageError(`--user must be a user id (a UUID) or an e-mail, not '${userReference}'`);
  const reason = reasonOf(flags['reason']);
  if (flags['yes'] !== true)
    throw new UsageError(
      'refusing to delete: erasing a user and everything that is theirs cannot be undone; add --yes to confirm',
    );
  // A server on this embedded cluster would neither cancel the user's running runs nor drop
  // its in-memory copies of their cached answers: it does not listen for other processes.
  if (storage.embedded?.shared === true)
    throw new Error(
      'a Brigade server is running on this embedded database and would not hear of the erasure (its running runs and cached answers): delete the user through the API (DELETE /v1/tenants/{tenantId}/users/{userId}) or stop the server first',
    );
  const tenantId = await resolveTenant(identity, tenantReference);
  const userId = (await resolveUser(identity, tenantId, userReference)).toLowerCase();
  const user = await identity.getUser(operator, tenantId, userId).catch((error: unknown) => {
    if (error instanceof NotFoundError)
      throw new AppError('user_not_found', `no user with id '${userId}' in this tenant`);
    throw error;
  });
  await erase(options, { tenantId, userId, reason });
  const deleted = { tenantId, userId, email: user.email, status: 'deleted' as const };
  if (flags['json'] === true) io.out(JSON.stringify(deleted, null, 2));
  else
    io.out(
      `deleted user ${user.email === null ? userId : `${user.email} (${userId})`} and everything that was theirs; usage records and audit events are kept`,
    );
}

/**
 * Runs the erasure with this process's own run signals and response cache: the servers on an
 * external database hear its cancellations and purges (NOTIFY), and a configured Redis is
 * purged here.
 */
async function erase(
  options: DeleteUserCommandOptions,
  subject: {
    readonly tenantId: string;
    readonly userId: string;
    readonly reason: string | undefined;
  },
): Promise<void> {
  const { config, storage, logger } = options;
  const redis = config.redisUrl === undefined ? undefined : createRedisClient(config.redisUrl);
  const reportError = (error: unknown) =>
    logger.warn({ err: { message: (error as Error).message } }, 'erasure: connection failed');
  redis?.on('error', reportError);
  const signals = createRunSignals({
    connectionString: storage.runtimeConnection.url,
    crossProcess: storage.embedded === undefined,
    onError: reportError,
  });
  try {
    if (redis !== undefined) await whenReady(redis);
    await signals.start();
    const dataRights = composeDataRights({
      database: storage.database,
      signals,
      responseCache: createResponseCacheStore(redis, reportError),
      // This process runs nothing: the servers cancel the user's runs and stop the stdio MCP
      // processes started for them when they hear of it.
      endAccess: async (subject) => {
        try {
          return await cancelRunsOf(storage.database, signals, subject);
        } finally {
          signals.mcpStdioClosed(encodeMcpStdioTarget(subject));
        }
      },
    });
    const { tenantId, userId, reason } = subject;
    await dataRights.deleteUser(operator, { tenantId, userId }, reason);
  } finally {
    // Sends the NOTIFYs still batched (cancellations, cache purges) before it disconnects.
    await signals.stop();
    redis?.disconnect();
  }
}

/**
 * Resolves once Redis accepts commands (it queues none before); fails at its first connection
 * error or after {@link redisReadyTimeoutMs}, before anything changed.
 */
function whenReady(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const settle = (error: Error | undefined) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('error', onError);
      if (error === undefined) resolve();
      else
        reject(
          new AppError(
            'service_unavailable',
            `cannot reach Redis (REDIS_URL: ${error.message}) to drop the user’s cached answers, so nothing was deleted; try again`,
            { cause: error },
          ),
        );
    };
    const onReady = () => settle(undefined);
    const onError = (error: Error) => settle(error);
    const timer = setTimeout(
      () => settle(new Error(`not ready after ${redisReadyTimeoutMs} ms`)),
      redisReadyTimeoutMs,
    );
    redis.once('ready', onReady);
    redis.once('error', onError);
  });
}
