import type { AuditRecord } from '../../domain/identity/identity-types.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { ReserveCall, ReserveRow, SettleCall } from '../guards/budget-calls.ts';
import { auditColumns } from '../identity/audit-writer.ts';
import type { Database } from '../postgres/database.ts';
import { storableJson, storableText } from '../postgres/storable.ts';
import { type ClaimedRun, type ClaimRunsOptions, claimArguments } from './run-claim.ts';

/**
 * The run a checkpoint belongs to, whose it is (its row-level-security scope), and the
 * executor that holds its claim: every checkpoint is fenced with it (migration 0042) and
 * writes nothing once another executor holds the run's queue entry, or the entry is gone.
 * Undefined for a run executed without a scheduler: not fenced.
 */
export interface CheckpointRun {
  readonly tenantId: string;
  readonly userId: string;
  readonly runId: string;
  readonly executorId?: string | undefined;
}

/** Buffered events a checkpoint commits, numbered from `firstSeq`. */
export interface CheckpointEvents {
  readonly firstSeq: number;
  readonly events: readonly { readonly type: string; readonly data: Record<string, unknown> }[];
}

const parameters = (first: number, count: number) =>
  Array.from({ length: count }, (_, index) => `$${first + index}`).join(', ');

/**
 * The claim fence of a checkpoint statement whose run is $1–$3 and whose executor is `$n`
 * (migration 0042), as the statement's FROM item: the function scan yields its one row before
 * the select list (the write) is evaluated, so a refused checkpoint raises before it writes
 * anything and with the fence's SQLSTATE, not with a conflict of what it would have written.
 */
const fence = (executor: number) => `brigade.assert_claim($1, $2, $3, $${executor}) as fence`;

/** A fenced call of `call` with `count` arguments: `select <call>($1…$count) <as> from fence`. */
function fenced(call: string, count: number, as: string) {
  return `select ${call}(${parameters(1, count)}) ${as} from ${fence(count + 1)}`;
}

// Functions of migration 0016, each one prepared call (one round trip, its own implicit
// transaction), fenced with the claim (0042): the executor id is the last parameter.
const saveStepStatement = {
  name: 'brigade_save_step',
  text: fenced('brigade.save_step', 11, ''),
};
/** Migration 0023: a model step checkpointed and its call settled in one transaction. */
const saveStepSettledStatement = {
  name: 'brigade_save_step_settled',
  text: fenced('brigade.save_step_settled', 12, 'as crossed'),
};
const finishStatement = {
  name: 'brigade_finish_run',
  text: fenced('brigade.finish_run', 11, 'as finished'),
};
/** Migration 0024: a run ended and the runs after it claimed in one transaction. */
const finishClaimStatement = {
  name: 'brigade_finish_run_claim',
  text: fenced('brigade.finish_run_claim', 16, 'as result'),
};

/** Migration 0032: the next model call's budget reserved and a tool step checkpointed. */
const reserveAfterStepStatement = {
  name: 'brigade_reserve_call_after_step',
  text: `with reserved as (${fenced('brigade.reserve_call_after_step', 16, 'as r')})
    select (r).res, (r).reservation_id from reserved`,
};

/**
 * `then` (with `count` parameters from $13) after checkpointing a settled model step, in one
 * statement and so one transaction: the CTE's row (the step saved, its call settled:
 * `save_step_settled`, $1–$12, once the fence passed) exists before the call in the select
 * list runs; the executor id follows `then`'s parameters. A step without a settlement (a model
 * call the run's end cut off, settled when it failed) passes null as $12: `settle_call` with
 * no reservation and no usage records nothing and crosses nothing.
 */
function afterStep(name: string, then: string, count: number) {
  return {
    name: `brigade_${name}_after_step`,
    text: `with step as (select brigade.save_step_settled(${parameters(1, 12)}) as crossed
        from ${fence(13 + count)})
      select step.crossed, ${then}(${parameters(13, count)}) as result from step`,
  };
}
const afterStepStatements = {
  finish: afterStep('finish', 'brigade.finish_run', 11),
  finishClaim: afterStep('finish_claim', 'brigade.finish_run_claim', 16),
  // A tool call's daily quota (migration 0016), counted once the model step that asked for the
  // call is saved.
  quota: afterStep('quota', 'brigade.consume_quota', 5),
};

/**
 * The runs a finishing run's process claims with the finish (migration 0024). `take` is asked
 * when the finish is sent: the claim's options (its `limit`: the slots free once the run ends),
 * or undefined for a finish that claims nothing. After a take, `done` always follows: with the
 * runs the claim took (possibly none) once the finish committed, or undefined when it failed.
 */
export interface SuccessorClaim {
  take(): ClaimRunsOptions | undefined;
  done(claims: readonly ClaimedRun[] | undefined): void;
}

/** A completed step: its key, its output and usage, and (tool calls) its audit event. */
export interface StepCheckpoint {
  readonly key: string;
  readonly kind: 'model' | 'tool';
  readonly output: unknown;
  readonly usage?: { readonly inputTokens: number; readonly outputTokens: number } | undefined;
  readonly audit?:
    | { readonly principal: Principal | undefined; readonly record: AuditRecord }
    | undefined;
  /** The model call's settlement, committed with the step (tenant and user are the run's). */
  readonly settlement?: SettleCall | undefined;
}

/** A model step with its call's settlement: the only kind committed with another call. */
export type SettledStepCheckpoint = StepCheckpoint & { readonly settlement: SettleCall };

/** How a run ends. */
export interface RunEnding {
  readonly status: 'completed' | 'failed' | 'cancelled' | 'expired';
  readonly errorCode?: string | undefined;
  readonly errorMessage?: string | undefined;
  /** The answer, kept as the thread's assistant message when the run completed. */
  readonly text?: string | undefined;
  readonly incompleteReason?: string | undefined;
}

/** What a run that ended had used, and when it was created and first claimed. */
export interface FinishedRun {
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly createdAt: Date;
  readonly firstClaimedAt: Date | null;
}

/**
 * A run's checkpoints, each one call of a function of migration 0016, fenced with the run's
 * claim (migration 0042: refused with `BRG17`, having written nothing, once the claim is lost;
 * see run-claim.ts). (A run is started by the call that loads it: runtime/run-loader.ts.)
 */
export interface RunCheckpoints {
  /**
   * Checkpoints a completed step with the events buffered while it ran (and its audit event)
   * in one transaction; a step saved before is kept (a resumed run replays it). With a
   * settlement, the model call is settled in the same transaction; returns the budget alert
   * thresholds it crossed (0 without one).
   */
  saveStep(run: CheckpointRun, batch: CheckpointEvents, step: StepCheckpoint): Promise<number>;
  /**
   * Checkpoints `step` (as {@link saveStep}), then counts one tool call against the daily
   * tool-call quotas of the run's user, key and agent, in one transaction; returns the alert
   * thresholds the step's settlement crossed and `consume_quota`'s verdict (nothing counted
   * when it refuses; the step is saved either way).
   */
  saveStepThenConsumeQuota(
    run: CheckpointRun,
    batch: CheckpointEvents,
    request: {
      readonly step: SettledStepCheckpoint;
      readonly binding: { readonly keyId: string | null; readonly agentId: string };
    },
  ): Promise<{ readonly crossed: number; readonly verdict: unknown }>;
  /**
   * Reserves the budget of the run's next model call (`reserve_call`) and checkpoints `step`
   * (a tool step: no settlement) as {@link saveStep}, in one transaction; returns the
   * reservation's row. The step is saved whatever the verdict.
   */
  saveStepThenReserve(
    run: CheckpointRun,
    batch: CheckpointEvents,
    request: { readonly step: StepCheckpoint; readonly reservation: ReserveCall },
  ): Promise<ReserveRow | undefined>;
  /**
   * Ends a run unless it already ended (a completion also loses to a requested cancel): the
   * answer becomes an assistant message, the buffered events and then `terminal` (its data
   * completed with the run's `usage`) are committed, and the queue entry goes. Returns
   * undefined, having written nothing, when the run did not move (see migration 0016 for the
   * queue entry).
   */
  finish(
    run: CheckpointRun,
    batch: CheckpointEvents,
    ending: RunEnding & {
      readonly terminal: { readonly type: string; readonly data: Record<string, unknown> };
      /** The runs the finish claims for this process (migration 0024). */
      readonly successors?: SuccessorClaim | undefined;
      /**
       * The run's last step, not checkpointed yet: saved (and its call settled, when it has a
       * settlement) first, in the finish's transaction, even when the run did not move.
       * `committed` gets the budget alert thresholds its settlement crossed (0 without one)
       * once that transaction committed.
       */
      readonly step?:
        | {
            readonly checkpoint: StepCheckpoint;
            readonly committed: (crossed: number) => void;
          }
        | undefined;
    },
  ): Promise<FinishedRun | undefined>;
}

/** Creates the {@link RunCheckpoints} on `database`. */
export function createRunCheckpoints(database: Database): RunCheckpoints {
  /** One fenced checkpoint statement: `values`, then the executor holding `run`'s claim. */
  function call(
    statement: { readonly name: string; readonly text: string },
    run: CheckpointRun,
    values: readonly unknown[],
  ) {
    return database.callPrepared(statement, [...values, run.executorId ?? null]);
  }

  /** save_step's 11 arguments, then save_step_settled's settlement (or null). */
  function stepValues(run: CheckpointRun, batch: CheckpointEvents, step: StepCheckpoint) {
    const audit =
      step.audit === undefined
        ? null
        : JSON.stringify({ ...auditColumns(step.audit), data: step.audit.record.data ?? {} });
    const settlement =
      step.settlement === undefined
        ? null
        : JSON.stringify({
            reservation: step.settlement.reservation,
            cost: step.settlement.cost,
            status: step.settlement.status,
            usage: step.settlement.usage,
          });
    return [
      run.tenantId,
      run.userId,
      run.runId,
      batch.firstSeq,
      storableJson(batch.events),
      step.key,
      step.kind,
      storableJson(step.output),
      step.usage?.inputTokens ?? 0,
      step.usage?.outputTokens ?? 0,
      audit,
      settlement,
    ];
  }

  return {
    async saveStep(run, batch, step) {
      const values = stepValues(run, batch, step);
      if (step.settlement === undefined) {
        await call(saveStepStatement, run, values.slice(0, 11));
        return 0;
      }
      const [row] = await call(saveStepSettledStatement, run, values);
      return Number(row?.['crossed'] ?? 0);
    },
    async saveStepThenConsumeQuota(run, batch, { step, binding }) {
      const [row] = await call(afterStepStatements.quota, run, [
        ...stepValues(run, batch, step),
        run.tenantId,
        run.userId,
        'tool_calls',
        binding.keyId,
        binding.agentId,
      ]);
      return { crossed: Number(row?.['crossed'] ?? 0), verdict: row?.['result'] };
    },
    async saveStepThenReserve(run, batch, { step, reservation }) {
      if (step.settlement !== undefined) throw new Error('a settled step is saved with its call');
      if (
        reservation.tenant !== run.tenantId ||
        reservation.user !== run.userId ||
        reservation.run !== run.runId
      )
        throw new Error("a step is saved only with its own run's reservation");
      const [row] = await call(reserveAfterStepStatement, run, [
        ...stepValues(run, batch, step).slice(0, 11),
        reservation.amount,
        reservation.key,
        reservation.agent,
        reservation.id,
        reservation.expires,
      ]);
      return row as unknown as ReserveRow | undefined;
    },
    async finish(run, batch, ending) {
      const { successors, step } = ending;
      const values = [
        run.tenantId,
        run.userId,
        run.runId,
        batch.firstSeq,
        storableJson(batch.events),
        ending.status,
        ending.errorCode ?? null,
        ending.errorMessage === undefined ? null : storableText(ending.errorMessage),
        ending.incompleteReason ?? null,
        ending.text === undefined ? null : storableText(ending.text),
        storableJson(ending.terminal),
      ];
      // The step commits no events of its own: the finish commits the whole batch after it.
      const before =
        step === undefined
          ? []
          : stepValues(run, { firstSeq: batch.firstSeq, events: [] }, step.checkpoint);
      let finished: Record<string, unknown> | null | undefined;
      let crossed = 0;
      const claim = successors?.take();
      if (successors === undefined || claim === undefined) {
        if (step === undefined) {
          const [row] = await call(finishStatement, run, values);
          finished = row?.['finished'] as typeof finished;
        } else {
          const [row] = await call(afterStepStatements.finish, run, [...before, ...values]);
          finished = row?.['result'] as typeof finished;
          crossed = Number(row?.['crossed'] ?? 0);
        }
      } else {
        let claims: ClaimedRun[] | undefined;
        try {
          const statement =
            step === undefined ? finishClaimStatement : afterStepStatements.finishClaim;
          const [row] = await call(statement, run, [
            ...before,
            ...values,
            ...claimArguments(claim),
          ]);
          const result = row?.['result'] as
            | { finished: typeof finished; claims: [string, string, string][] }
            | undefined;
          finished = result?.finished;
          crossed = Number(row?.['crossed'] ?? 0);
          claims = (result?.claims ?? []).map(([runId, tenantId, userId]) => ({
            runId,
            tenantId,
            userId,
          }));
        } finally {
          successors.done(claims);
        }
      }
      step?.committed(crossed);
      if (finished === null || finished === undefined) return undefined;
      return {
        inputTokens: Number(finished['inputTokens']),
        outputTokens: Number(finished['outputTokens']),
        createdAt: new Date(String(finished['createdAt'])),
        firstClaimedAt:
          finished['firstClaimedAt'] === null ? null : new Date(String(finished['firstClaimedAt'])),
      };
    },
  };
}
