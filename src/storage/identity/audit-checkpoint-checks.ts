import type { AuditVerifier } from '../../domain/audit/audit-signing.ts';

/** One broken link found while verifying: where, and why. */
export interface CheckpointFailure {
  readonly seq: number;
  readonly reason: string;
}

/** A stored checkpoint row as verification reads it. */
export interface CheckpointRow {
  readonly seq: string;
  readonly hash: Buffer;
  readonly signed_at: Date;
  readonly key_id: string;
  readonly signature: Buffer;
}

/**
 * Checks a tenant's checkpoints (in sequence order) against its chain: each signature must be
 * the trusted key's, and the chain must still hold each checkpoint's (seq, hash). A tail cut
 * below a checkpoint, or rows rewritten with every later hash recomputed, fail here even when
 * the chain itself is consistent. A rewrite is reported at the first record after the last
 * checkpoint that still matches, the earliest record that can have changed.
 */
export function checkCheckpoints(options: {
  readonly tenantId: string;
  readonly checkpoints: readonly CheckpointRow[];
  /** Chain hash by sequence number, as stored. */
  readonly hashes: ReadonlyMap<number, Buffer>;
  /** Highest sequence number present in the chain (0 when empty). */
  readonly lastSeq: number;
  readonly verifier: AuditVerifier | undefined;
  /**
   * Whether to check each checkpoint's signature (verifyAudit), or only that the chain still
   * holds it (signing: the signatures were checked when verified; an Ed25519 check per stored
   * checkpoint on every signing grew without bound, and a new signing key stopped signing).
   */
  readonly signatures?: boolean;
}): CheckpointFailure[] {
  const { tenantId, checkpoints, hashes, lastSeq, verifier } = options;
  const signatures = options.signatures !== false;
  const failures: CheckpointFailure[] = [];
  let matchedUpTo = 0;
  for (const checkpoint of checkpoints) {
    const seq = Number(checkpoint.seq);
    const fields = {
      tenantId,
      seq,
      hash: checkpoint.hash.toString('hex'),
      signedAt: checkpoint.signed_at,
      keyId: checkpoint.key_id,
    };
    if (signatures && verifier === undefined) {
      failures.push({
        seq,
        reason: `checkpoint ${seq} cannot be checked: no audit public key is configured`,
      });
      return failures;
    }
    if (signatures && verifier !== undefined && !verifier.verify(fields, checkpoint.signature)) {
      failures.push({
        seq,
        reason:
          checkpoint.key_id === verifier.publicKey.keyId
            ? `checkpoint ${seq} has an invalid signature (forged, or the checkpoint was altered)`
            : `checkpoint ${seq} has an invalid signature (signed by key ${checkpoint.key_id}, not the trusted key ${verifier.publicKey.keyId}: forged, or signed by another key)`,
      });
      return failures;
    }
    const stored = hashes.get(seq);
    if (stored === undefined) {
      const from = Math.min(lastSeq + 1, seq);
      failures.push({
        seq: from,
        reason: `records ${from}–${seq} are missing: signed checkpoint ${seq} covers them`,
      });
      return failures;
    }
    if (!stored.equals(checkpoint.hash)) {
      failures.push({
        seq: matchedUpTo + 1,
        reason: `the chain no longer matches signed checkpoint ${seq}: a record in ${matchedUpTo + 1}–${seq} was rewritten`,
      });
      return failures;
    }
    matchedUpTo = seq;
  }
  return failures;
}
