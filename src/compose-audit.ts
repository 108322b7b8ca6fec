import type { KeyObject } from 'node:crypto';
import type { Config } from './config/index.ts';
import { createAuditSigner } from './domain/audit/audit-signing.ts';
import type { Logger } from './observability/index.ts';
import { createAuditCheckpointer } from './runtime/audit-checkpointer.ts';
import { createAuditCheckpointStore } from './storage/identity/audit-checkpoint-store.ts';
import type { Database } from './storage/postgres/database.ts';

/**
 * Part of the composition root (main.ts): the audit log's signed checkpoints — the signer (none
 * without a signing key: checkpoints are then not written, and a warning says so), their store
 * and the checkpointer that writes them when due.
 */
export function composeAuditCheckpoints(options: {
  readonly database: Database;
  readonly signingKey: KeyObject | undefined;
  readonly config: Config['audit']['checkpoints'];
  readonly logger: Logger;
}) {
  const { config, logger } = options;
  const signer =
    options.signingKey === undefined ? undefined : createAuditSigner(options.signingKey);
  if (signer === undefined)
    logger.warn(
      {},
      'no audit signing key (BRIGADE_AUDIT_SIGNING_KEY): audit checkpoints are not written',
    );
  else logger.info({ keyId: signer.publicKey.keyId }, 'audit checkpoints are signed');
  const checkpoints = createAuditCheckpointStore(options.database, signer);
  const checkpointer = createAuditCheckpointer({
    store: checkpoints,
    due: { everyEvents: config.everyEvents, intervalSeconds: config.intervalSeconds },
    pollMs: config.pollMs,
    logger,
  });
  return { signer, checkpoints, checkpointer };
}
