import { type Kysely, type Migration, type MigrationResultSet, Migrator, sql } from 'kysely';
import { identityMigration } from './0001-identity.ts';
import { agentsThreadsRunsMigration } from './0002-agents-threads-runs.ts';
import { approvalsMigration } from './0003-approvals.ts';
import { guardRailsMigration } from './0004-guard-rails.ts';
import { fairQueueMigration } from './0005-fair-queue.ts';
import { modelRoutesMigration } from './0006-model-routes.ts';
import { accountabilityMigration } from './0007-accountability.ts';
import { toolsMigration } from './0009-tools.ts';
import { degradationWebhooksMigration } from './0010-degradation-webhooks.ts';
import { spansMigration } from './0011-spans.ts';
import { mcpMigration } from './0012-mcp.ts';
import { oauthCredentialsMigration } from './0013-oauth-credentials.ts';
import { hotPathFunctionsMigration } from './0014-hot-path-functions.ts';
import { approvalExpiryMigration } from './0015-approval-expiry.ts';
import { runCheckpointFunctionsMigration } from './0016-run-checkpoint-functions.ts';
import { claimOnArrivalMigration } from './0017-claim-on-arrival.ts';
import { tenantClaimLocksMigration } from './0018-tenant-claim-locks.ts';
import { batchedBudgetCallsMigration } from './0019-batched-budget-calls.ts';
import { batchedKeyLookupsMigration } from './0020-batched-key-lookups.ts';
import { queueDrainMigration } from './0021-queue-drain.ts';
import { startOnLoadMigration } from './0022-start-on-load.ts';
import { settleWithStepMigration } from './0023-settle-with-step.ts';
import { claimWithFinishMigration } from './0024-claim-with-finish.ts';
import { agentHistoryWindowMigration } from './0025-agent-history-window.ts';
import { sealedWebhookSecretsMigration } from './0026-sealed-webhook-secrets.ts';
import { runHistoryMigration } from './0027-run-history.ts';
import { activeRunsByThreadMigration } from './0028-active-runs-by-thread.ts';
import { userLimitCountersMigration } from './0029-user-limit-counters.ts';
import { loadRunFunctionsMigration } from './0030-load-run-functions.ts';
import { platformPolicyAuditMigration } from './0031-platform-policy-audit.ts';
import { reserveAfterToolStepMigration } from './0032-reserve-after-tool-step.ts';
import { credentialAllowedHostsMigration } from './0033-credential-allowed-hosts.ts';
import { runsRequireAccessMigration } from './0034-runs-require-access.ts';
import { memoriesMigration } from './0035-memories.ts';
import { usersEditOwnProfileMigration } from './0036-users-edit-own-profile.ts';
import { runCreatedAfterLockMigration } from './0037-run-created-after-lock.ts';
import { webhookDeliveriesByTenantMigration } from './0038-webhook-deliveries-by-tenant.ts';
import { retentionMigration } from './0039-retention.ts';
import { spanPruningMigration } from './0040-span-pruning.ts';
import { createRunAfterLockMigration } from './0041-create-run-after-lock.ts';
import { claimFenceMigration } from './0042-claim-fence.ts';
import { auditHashV2Migration } from './0043-audit-hash-v2.ts';
import { runTraceParentMigration } from './0045-run-trace-parent.ts';
import { spanContentLifetimeMigration } from './0046-span-content-lifetime.ts';
import { toolConsentsMigration } from './0047-tool-consents.ts';
import { carryLimitCountersMigration } from './0050-carry-limit-counters.ts';
import { approvalPolicyVersionMigration } from './0051-approval-policy-version.ts';
import { runErrorDetailsMigration } from './0052-run-error-details.ts';
import { usageCallsAndAttemptsMigration } from './0058-usage-calls-and-attempts.ts';
import { limitCounterLockOrderMigration } from './0059-limit-counter-lock-order.ts';
import { policyPerManagerMigration } from './0060-policy-per-manager.ts';
import { noRollingBudgetAlertsMigration } from './0061-no-rolling-budget-alerts.ts';
import type { MigrationContext } from './migration-context.ts';

/** Ordered list of migrations; names sort lexically and are never renamed once released. */
function migrations(context: MigrationContext): Record<string, Migration> {
  const fromSql = (build: (context: MigrationContext) => string): Migration => ({
    up: async (db) => {
      await sql.raw(build(context)).execute(db);
    },
  });
  return {
    '0001-identity': fromSql(identityMigration),
    '0002-agents-threads-runs': fromSql(agentsThreadsRunsMigration),
    '0003-approvals': fromSql(approvalsMigration),
    '0004-guard-rails': fromSql(guardRailsMigration),
    '0005-fair-queue': fromSql(fairQueueMigration),
    '0006-model-routes': fromSql(modelRoutesMigration),
    '0007-accountability': fromSql(accountabilityMigration),
    '0009-tools': fromSql(toolsMigration),
    '0010-degradation-webhooks': fromSql(degradationWebhooksMigration),
    '0011-spans': fromSql(spansMigration),
    '0012-mcp': fromSql(mcpMigration),
    '0013-oauth-credentials': fromSql(oauthCredentialsMigration),
    '0014-hot-path-functions': fromSql(hotPathFunctionsMigration),
    '0015-approval-expiry': fromSql(approvalExpiryMigration),
    '0016-run-checkpoint-functions': fromSql(runCheckpointFunctionsMigration),
    '0017-claim-on-arrival': fromSql(claimOnArrivalMigration),
    '0018-tenant-claim-locks': fromSql(tenantClaimLocksMigration),
    '0019-batched-budget-calls': fromSql(batchedBudgetCallsMigration),
    '0020-batched-key-lookups': fromSql(batchedKeyLookupsMigration),
    '0021-queue-drain': fromSql(queueDrainMigration),
    '0022-start-on-load': fromSql(startOnLoadMigration),
    '0023-settle-with-step': fromSql(settleWithStepMigration),
    '0024-claim-with-finish': fromSql(claimWithFinishMigration),
    '0025-agent-history-window': fromSql(agentHistoryWindowMigration),
    '0026-sealed-webhook-secrets': fromSql(sealedWebhookSecretsMigration),
    '0027-run-history': fromSql(runHistoryMigration),
    '0028-active-runs-by-thread': fromSql(activeRunsByThreadMigration),
    '0029-user-limit-counters': fromSql(userLimitCountersMigration),
    '0030-load-run-functions': fromSql(loadRunFunctionsMigration),
    '0031-platform-policy-audit': fromSql(platformPolicyAuditMigration),
    '0032-reserve-after-tool-step': fromSql(reserveAfterToolStepMigration),
    '0033-credential-allowed-hosts': fromSql(credentialAllowedHostsMigration),
    '0034-runs-require-access': fromSql(runsRequireAccessMigration),
    '0035-memories': fromSql(memoriesMigration),
    '0036-users-edit-own-profile': fromSql(usersEditOwnProfileMigration),
    '0037-run-created-after-lock': fromSql(runCreatedAfterLockMigration),
    '0038-webhook-deliveries-by-tenant': fromSql(webhookDeliveriesByTenantMigration),
    '0039-retention': fromSql(retentionMigration),
    '0040-span-pruning': fromSql(spanPruningMigration),
    '0041-create-run-after-lock': fromSql(createRunAfterLockMigration),
    '0042-claim-fence': fromSql(claimFenceMigration),
    '0043-audit-hash-v2': fromSql(auditHashV2Migration),
    '0045-run-trace-parent': fromSql(runTraceParentMigration),
    '0046-span-content-lifetime': fromSql(spanContentLifetimeMigration),
    '0047-tool-consents': fromSql(toolConsentsMigration),
    '0050-carry-limit-counters': fromSql(carryLimitCountersMigration),
    '0051-approval-policy-version': fromSql(() => approvalPolicyVersionMigration),
    '0052-run-error-details': fromSql(runErrorDetailsMigration),
    '0058-usage-calls-and-attempts': fromSql(usageCallsAndAttemptsMigration),
    '0059-limit-counter-lock-order': fromSql(limitCounterLockOrderMigration),
    '0060-policy-per-manager': fromSql(policyPerManagerMigration),
    '0061-no-rolling-budget-alerts': fromSql(noRollingBudgetAlertsMigration),
  };
}

/** Result of {@link migrateToLatest}: the names applied in this call. */
export interface MigrateResult {
  readonly applied: readonly string[];
}

/**
 * Applies every pending migration as the owner role. Concurrent callers (several processes
 * starting at once) serialise on Kysely's migration lock, so each migration runs once.
 */
export async function migrateToLatest(
  ownerDb: Kysely<unknown>,
  context: MigrationContext,
): Promise<MigrateResult> {
  const migrator = new Migrator({
    db: ownerDb,
    provider: { getMigrations: async () => migrations(context) },
    migrationTableSchema: 'brigade',
  });
  const result: MigrationResultSet = await migrator.migrateToLatest();
  if (result.error !== undefined) {
    const unknown = /previously executed migration (\S+) is missing/.exec(
      (result.error as Error).message,
    );
    if (unknown !== null)
      throw new Error(
        `the database schema is newer than this version of Brigade (it has migration ${unknown[1]}, which this version does not know); run the newer version`,
        { cause: result.error },
      );
    const failed = result.results?.find((item) => item.status === 'Error');
    throw new Error(
      `migration ${failed?.migrationName ?? '(unknown)'} failed: ${(result.error as Error).message}`,
      { cause: result.error },
    );
  }
  return {
    applied: (result.results ?? [])
      .filter((item) => item.status === 'Success')
      .map((item) => item.migrationName),
  };
}

/**
 * Names of the migrations this version knows that the database has not applied (read-only: a
 * database without Brigade's schema has them all pending). A process that does not migrate
 * refuses to start on such a database, where its statements would fail.
 */
export async function pendingMigrations(
  ownerDb: Kysely<unknown>,
  context: MigrationContext,
): Promise<string[]> {
  const migrator = new Migrator({
    db: ownerDb,
    provider: { getMigrations: async () => migrations(context) },
    migrationTableSchema: 'brigade',
  });
  return (await migrator.getMigrations())
    .filter((migration) => migration.executedAt === undefined)
    .map((migration) => migration.name);
}
