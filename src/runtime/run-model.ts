import type { Agent, Run } from '../domain/agents/agent-types.ts';
import type { Role } from '../domain/identity/permissions.ts';
import type { ModelCapabilityV1, ModelResultV1 } from '../plugin-api/index.ts';
import type { Database } from '../storage/postgres/database.ts';
import type { EventWriter } from './event-writer.ts';
import type { MeteredGateway } from './metered-gateway.ts';
import type { RunClaim } from './run-executor.ts';
import type { Checkpoints, StepRecorder } from './run-steps.ts';
import type { SettledStepRecord, StepRecord } from './step-record.ts';
import { spotlightMessages } from './tools/spotlight.ts';

/** A run's model capability, and the text its call in flight has streamed so far. */
export interface RunModel {
  readonly capability: ModelCapabilityV1;
  /** Text streamed by the model call in flight: the partial answer at a deadline. */
  streamed(): string;
  /**
   * Commits the model steps not checkpointed yet. Awaited before anything the core does next
   * reaches the world (a tool call, another model call): no side effect ever follows a model
   * answer that could be lost.
   */
  flush(): Promise<void>;
  /**
   * Commits the steps not checkpointed yet, the last of them through `merged` (which commits
   * it together with something else, in one transaction) after the others; undefined, once
   * every earlier commit is done, when there was none.
   */
  commitWith<T>(merged: (step: SettledStepRecord) => Promise<T>): Promise<{ value: T } | undefined>;
  /**
   * For the run's finish: the one step still to checkpoint, which the finish then commits in
   * its own transaction (the step first); any other is committed here first.
   */
  takeForFinish(): Promise<SettledStepRecord | undefined>;
}

/**
 * The model a core reaches, for one run: every call goes through the metered gateway (limits,
 * budget, degradation) and is checkpointed as step `model:N` with its events and settlement
 * in one transaction (migrations 0016 and 0023); a resumed run gets its saved calls back
 * instead of calling again.
 *
 * A step is checkpointed when the core next reaches out ({@link RunModel.flush}: the next
 * model or tool call), or with the run's finish when it was the last (one transaction and
 * round trip fewer per run). Between the model's answer and that moment the core only
 * computes; a crash there repeats the call on resume, as a crash during the call would.
 */
export function createRunModel(context: {
  readonly database: Database;
  readonly gateway: MeteredGateway;
  readonly saveStep: StepRecorder['saveStep'];
  readonly claim: RunClaim;
  readonly run: Run;
  readonly agent: Agent;
  readonly role: Role | undefined;
  readonly deadline: Date;
  readonly signal: AbortSignal;
  readonly events: EventWriter;
  readonly checkpoints: Checkpoints;
}): RunModel {
  const { claim, run, agent, events, checkpoints } = context;
  let modelCalls = 0;
  let streamed = '';
  let degraded = run.degraded;
  let pending: SettledStepRecord[] = [];
  // The saves in flight, in order (never rejected, so no failure goes unhandled); the first
  // failure is kept, and every later flush reports it: no tool call runs after a model step
  // that could not be saved.
  let flushing: Promise<void> = Promise.resolve();
  let failed: { readonly error: unknown } | undefined;
  const track = (saving: Promise<unknown>) => {
    flushing = saving.then(
      () => undefined,
      (error: unknown) => {
        failed ??= { error };
      },
    );
  };
  const throwIfFailed = () => {
    if (failed !== undefined) throw failed.error;
  };
  const saveAll = async (steps: readonly StepRecord[]) => {
    if (failed !== undefined) {
      // Not saved after a failure: their calls are settled on their own, not held.
      for (const step of steps) await step.settlement?.settleAlone().catch(() => undefined);
      throw failed.error;
    }
    for (const step of steps) await context.saveStep(claim, step);
  };

  function flush(): Promise<void> {
    if (pending.length > 0) {
      const steps = pending;
      pending = [];
      track(flushing.then(() => saveAll(steps)));
    }
    return flushing.then(throwIfFailed);
  }

  /** Records that the run's model calls went to its degradation model. */
  async function markDegraded(): Promise<void> {
    await context.database.withScope(claim, (db) =>
      db
        .updateTable('brigade.runs')
        .set({ degraded: true })
        .where('id', '=', claim.runId)
        .execute(),
    );
  }

  const capability: ModelCapabilityV1 = {
    async generate(request) {
      await flush();
      const key = `model:${modelCalls}`;
      modelCalls += 1;
      streamed = '';
      const saved = checkpoints.get(key);
      if (saved !== undefined) return saved as ModelResultV1;
      const result = await context.gateway.generate({
        spender: {
          tenantId: claim.tenantId,
          userId: claim.userId,
          role: context.role,
          keyId: run.apiKeyId,
          agentId: agent.id,
          runId: run.id,
        },
        source: 'run',
        deadline: context.deadline,
        model: agent.model,
        // The built-in local model is no language model (it echoes); every other model gets
        // untrusted content delimited and datamarked (invariant 8).
        messages: agent.model === 'local' ? request.messages : spotlightMessages(request.messages),
        tools: request.tools,
        maxOutputTokens: agent.maxOutputTokens,
        signal: context.signal,
        // Settled with the step's checkpoint below, in one transaction.
        deferSettlement: true,
        onTextDelta: (delta) => {
          streamed += delta;
          request.onTextDelta?.(delta);
        },
        ...(agent.degradation === null
          ? {}
          : {
              degrade: {
                atPercent: agent.degradation.atBudgetPercent,
                model: agent.degradation.model,
              },
            }),
      });
      streamed = '';
      const { settlement, degraded: degradedCall, ...output } = result;
      if (degradedCall === true && !degraded) {
        degraded = true;
        events.push('model-degraded', {
          model: agent.degradation?.model,
          reason: `past ${agent.degradation?.atBudgetPercent} % of a budget`,
        });
        await markDegraded().catch(async (error: unknown) => {
          await settlement?.settleAlone().catch(() => undefined);
          throw error;
        });
      }
      const step: StepRecord = { events, key, kind: 'model', output, usage: result.usage };
      if (settlement === undefined) {
        // No call of a run comes without one (its settlement is deferred); if one did, it is
        // saved now, after the steps before it, rather than with another call.
        track(flushing.then(() => saveAll([step])));
        await flushing.then(throwIfFailed);
      } else pending.push({ ...step, settlement });
      checkpoints.set(key, output);
      return output;
    },
  };
  return {
    capability,
    streamed: () => streamed,
    flush,
    commitWith(merged) {
      const last = pending.pop();
      if (last === undefined) return flush().then(() => undefined);
      const steps = pending;
      pending = [];
      const result = flushing.then(async () => {
        await saveAll(steps);
        return { value: await merged(last) };
      });
      track(result);
      return result;
    },
    async takeForFinish() {
      if (pending.length > 1 || failed !== undefined) await flush();
      await flushing;
      throwIfFailed();
      return pending.pop();
    },
  };
}
