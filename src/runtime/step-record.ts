import type { AuditRecord } from '../domain/identity/identity-types.ts';
import type { UserPrincipal } from '../domain/identity/principal.ts';
import type { ModelResultV1 } from '../plugin-api/index.ts';
import type {
  CheckpointEvents,
  SettledStepCheckpoint,
  StepCheckpoint,
} from '../storage/runs/run-checkpoints.ts';
import type { EventWriter } from './event-writer.ts';
import type { PendingSettlement } from './metered-gateway.ts';

/** A completed step to checkpoint, with the events buffered while it ran. */
export interface StepRecord {
  readonly events: EventWriter;
  readonly key: string;
  readonly kind: 'model' | 'tool';
  readonly output: unknown;
  readonly usage?: ModelResultV1['usage'];
  /** An audit event committed with the checkpoint (tool calls), and who caused it. */
  readonly audit?: { readonly actor: UserPrincipal | undefined; readonly record: AuditRecord };
  /** The model call's settlement, committed with the checkpoint (model steps). */
  readonly settlement?: PendingSettlement | undefined;
}

/** What {@link StepRecord} checkpoints, as the checkpoint functions take it. */
export function toCheckpoint(step: StepRecord): StepCheckpoint {
  return {
    key: step.key,
    kind: step.kind,
    output: step.output,
    usage: step.usage,
    audit:
      step.audit === undefined
        ? undefined
        : { principal: step.audit.actor, record: step.audit.record },
    settlement: step.settlement?.call,
  };
}

/** A model step with its call's settlement: what a run may commit with another call. */
export type SettledStepRecord = StepRecord & { readonly settlement: PendingSettlement };

/** {@link toCheckpoint} of a settled model step. */
export function toSettledCheckpoint(step: SettledStepRecord): SettledStepCheckpoint {
  return { ...toCheckpoint(step), settlement: step.settlement.call };
}

/**
 * Checkpoints `step` through `write` (which may commit more in the same transaction), with
 * the events buffered while it ran, its usage and audit event and, for a model step, its
 * settlement: one call, one round trip (migrations 0016 and 0023).
 */
export async function saveStepWith<T>(
  step: StepRecord,
  write: (
    batch: CheckpointEvents,
    checkpoint: StepCheckpoint,
  ) => Promise<{ readonly crossed: number; readonly value: T }>,
): Promise<T> {
  const { settlement } = step;
  let written: { readonly crossed: number; readonly value: T };
  try {
    written = await step.events.checkpoint([], async (batch) => ({
      value: await write(batch, toCheckpoint(step)),
      committed: batch.events,
    }));
  } catch (error) {
    // The checkpoint failed (or its answer was lost): settle on its own, so the reservation
    // is not held until the orphan sweep; one the checkpoint did settle is left as it is.
    await settlement?.settleAlone().catch(() => undefined);
    throw error;
  }
  settlement?.committed(written.crossed);
  return written.value;
}
