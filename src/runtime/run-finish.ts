import type { Agent } from '../domain/agents/agent-types.ts';
import { AppError } from '../domain/errors.ts';
import { refusalDetails } from '../domain/guards/refusal-details.ts';
import type { RunCheckpoints, SuccessorClaim } from '../storage/runs/run-checkpoints.ts';
import type { RunSignalSink } from '../storage/runs/run-rows.ts';
import type { EventWriter } from './event-writer.ts';
import type { AbortReason, RunClaim, RunExecutorOptions } from './run-executor.ts';
import type { StepRecorder } from './run-steps.ts';
import { type StepRecord, toCheckpoint } from './step-record.ts';

/** How a run ends, as the executor decides it. */
export interface RunOutcome {
  readonly status: 'completed' | 'failed' | 'cancelled' | 'expired';
  readonly errorCode?: string;
  readonly errorMessage?: string;
  /** A refusal's structured details (budgets, quotas): the run's `errorDetails`. */
  readonly errorDetails?: Readonly<Record<string, unknown>>;
  readonly text?: string;
  /** Set when the answer is partial (the deadline came first). */
  readonly incompleteReason?: string;
}

/** A run cancelled by its user (or by an interrupting run). */
export const cancelledOutcome: RunOutcome = {
  status: 'cancelled',
  errorCode: 'cancelled',
  errorMessage: 'The run was cancelled.',
};

const terminalTypes = {
  completed: 'run-completed',
  failed: 'run-failed',
  cancelled: 'run-cancelled',
  expired: 'run-expired',
} as const;

/**
 * Ends runs: one checkpoint call (the status, the answer as a message, the events with the
 * terminal one completed by the run's usage, which only the database knows after a resume, and
 * the queue entry, and with `successors` the runs that take its slot: migration 0024), then the
 * metrics and a wake-up of the schedulers (of the other processes only, for a run the
 * scheduler launched). Answers `cancelled-late` when a completion lost the race against a
 * cancel (or an interrupt or rollback); the caller then ends the run as cancelled.
 */
export function createRunFinisher(options: {
  readonly checkpoints: RunCheckpoints;
  readonly signals: RunSignalSink;
  readonly metrics?: RunExecutorOptions['metrics'];
  /** Saves a step on its own: the fallback when a finish carrying it fails. */
  readonly saveStep: StepRecorder['saveStep'];
}) {
  return async function finish(
    claim: RunClaim,
    outcome: RunOutcome,
    context: {
      readonly events: EventWriter;
      readonly successors?: SuccessorClaim | undefined;
      /**
       * The run's last model step, not checkpointed yet: committed first, in the finish (with
       * its call's settlement, unless the call was settled already: one the end cut off).
       */
      readonly step?: StepRecord | undefined;
    },
  ): Promise<'done' | 'cancelled-late'> {
    const { events, successors, step } = context;
    const type = terminalTypes[outcome.status];
    const data = {
      status: outcome.status,
      ...(outcome.errorCode === undefined
        ? {}
        : { errorCode: outcome.errorCode, message: outcome.errorMessage }),
      ...(outcome.errorDetails === undefined ? {} : { errorDetails: outcome.errorDetails }),
      ...(outcome.text === undefined ? {} : { text: outcome.text }),
      ...(outcome.incompleteReason === undefined
        ? {}
        : { incomplete: { reason: outcome.incompleteReason } }),
    };
    const carried =
      step === undefined
        ? undefined
        : {
            checkpoint: toCheckpoint(step),
            committed: (crossed: number) => step.settlement?.committed(crossed),
          };
    let ended: Awaited<ReturnType<RunCheckpoints['finish']>>;
    try {
      ended = await events.checkpoint([], async (batch) => {
        const run = await options.checkpoints.finish(claim, batch, {
          ...outcome,
          terminal: { type, data },
          successors,
          step: carried,
        });
        // The run did not move (a cancel won): the step committed, the events did not (they
        // go back to the writer for the finish that follows).
        if (run === undefined) return { value: undefined };
        const usage = { inputTokens: run.inputTokens, outputTokens: run.outputTokens };
        return {
          value: run,
          committed: [...batch.events, { type, data: { ...data, usage } }],
        };
      });
    } catch (error) {
      // Nothing committed: the step is saved on its own (settled alone if that fails too),
      // so the model call it paid for is not made again when the run resumes.
      if (step !== undefined) await options.saveStep(claim, step).catch(() => undefined);
      throw error;
    }
    // The freed slot: other processes may claim with it. A run the scheduler launched (it
    // passes `successors`) leaves this process's wake-up to the scheduler, which claims
    // unless the finish already did.
    options.signals.queueChanged(successors === undefined ? undefined : { remoteOnly: true });
    if (ended === undefined && outcome.status === 'completed') return 'cancelled-late';
    if (ended !== undefined) {
      options.metrics?.recordRunOutcome(outcome.status);
      if (ended.firstClaimedAt !== null)
        options.metrics?.observeQueueWait(
          (ended.firstClaimedAt.getTime() - ended.createdAt.getTime()) / 1000,
        );
    }
    return 'done';
  };
}

/**
 * How a run whose core threw ends: cancelled, its partial answer at the deadline (when the
 * agent asks for it and text was streamed; `guard` is the output guard it leaves through),
 * expired, or failed with the error's stable code (`core_error` for anything not an
 * {@link AppError}, whose message stays in the log).
 */
export function outcomeOfError(
  error: unknown,
  context: {
    readonly reason: Exclude<AbortReason, 'shutdown' | 'claim-lost'> | undefined;
    readonly agent: Pick<Agent, 'onDeadline' | 'runTimeoutMs'>;
    readonly streamed: string;
    readonly guard: (text: string) => string;
  },
): RunOutcome {
  const { reason, agent, streamed } = context;
  if (reason === 'cancel') return cancelledOutcome;
  if (reason === 'timeout' && agent.onDeadline === 'partial' && streamed.length > 0)
    return { status: 'completed', text: context.guard(streamed), incompleteReason: 'deadline' };
  if (reason === 'timeout')
    return {
      status: 'expired',
      errorCode: 'run_timeout',
      errorMessage: `The run exceeded its ${agent.runTimeoutMs} ms timeout.`,
    };
  if (error instanceof AppError) {
    const errorDetails = refusalDetails(error);
    return {
      status: 'failed',
      errorCode: error.code,
      errorMessage: error.message,
      ...(errorDetails === undefined ? {} : { errorDetails }),
    };
  }
  return { status: 'failed', errorCode: 'core_error', errorMessage: 'The agent core failed.' };
}

/** Why `signal` was aborted, if it was (the executor aborts only with an {@link AbortReason}). */
export function abortReasonOf(signal: AbortSignal): AbortReason | undefined {
  return signal.aborted ? (signal.reason as AbortReason) : undefined;
}
