import type { Agent, Run } from '../domain/agents/agent-types.ts';
import type { Role } from '../domain/identity/permissions.ts';
import type { ModelCapabilityV1, ModelResultV1 } from '../plugin-api/index.ts';
import type { ReserveVia } from '../storage/guards/budget-store.ts';
import type { Database } from '../storage/postgres/database.ts';
import type { EventWriter } from './event-writer.ts';
import type { MeteredGateway, MeteredResult } from './metered-gateway.ts';
import type { RunClaim } from './run-executor.ts';
import type { Checkpoints, StepRecorder } from './run-steps.ts';
import type { SettledStepRecord, StepRecord } from './step-record.ts';
import { recordToolCallIds, uniqueToolCallIds } from './tool-call-ids.ts';
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
   * it together with something else, in one transaction) after the others, when it is a
   * settled model step; undefined, once every commit is done, when there was none.
   */
  commitWith<T>(merged: (step: SettledStepRecord) => Promise<T>): Promise<{ value: T } | undefined>;
  /**
   * For the run's finish: the step the finish commits in its own transaction (the step first),
   * any other being committed here first. That is the model call the run's end cut off after
   * its output started, when there is one (already charged: it carries the usage it was
   * charged with, estimated, and the text it streamed, with finish reason `other`), so the
   * run's usage and step count agree with the usage ledger; else the settled model step still
   * to checkpoint.
   */
  takeForFinish(): Promise<StepRecord | undefined>;
  /**
   * Holds a completed tool step, to be committed with the next thing the run sends: the next
   * model call's budget reservation (one transaction, migration 0032), or a flush (another
   * step, a tool call, an approval, the finish, a pause). A model call that fails before it
   * reserves, or is about to wait for a rate limit, commits it on its own first; so does the
   * end of the current turn of the event loop when the core has not called the model by then.
   */
  hold(step: StepRecord): Promise<void>;
}

/** A held tool step riding on a model call's reservation (see RunModel.hold). */
interface CarriedStep {
  readonly reserveVia: ReserveVia;
  readonly alone: () => Promise<void>;
}

/**
 * The model call's result once the carried step is committed: with the reservation, or on its
 * own when the call failed before it reserved (then the call's failure is thrown, unless the
 * step could not be committed either). A step that could not be committed fails the run here,
 * before the answer is used; that answer's settlement is then released on its own.
 */
async function afterCarried(
  called: Promise<MeteredResult>,
  carried: CarriedStep,
): Promise<MeteredResult> {
  let result: MeteredResult;
  try {
    result = await called;
  } catch (error) {
    await carried.alone();
    throw error;
  }
  try {
    await carried.alone();
  } catch (error) {
    await result.settlement?.settleAlone().catch(() => undefined);
    throw error;
  }
  return result;
}

/**
 * The model a core reaches, for one run: every call goes through the metered gateway (limits,
 * budget, degradation) and is checkpointed as step `model:N` with its events and settlement
 * in one transaction (migrations 0016 and 0023); a resumed run gets its saved calls back
 * instead of calling again. The tool-call ids of each answer are made unique within the run
 * first (see uniqueToolCallIds), so everything keyed on them, checkpoint included, agrees.
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
  readonly saveStepThenReserve: StepRecorder['saveStepThenReserve'];
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
  let pending: StepRecord[] = [];
  /** The tool-call ids of the run's model steps so far (see uniqueToolCallIds). */
  const toolCallIds = new Set<string>();
  // The call in flight cut off after its output started (see takeForFinish); a core that goes
  // on to another call leaves it out (checkpointed, a resumed run would get it back as an
  // answer where the core got a failure).
  let cutOff: StepRecord | undefined;
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

  /**
   * The held tool step, if the last step not committed yet is one, taken to ride on the next
   * model call's reservation: `reserveVia` commits it with the reservation, `alone` on its own
   * if that has not happened (both at most once; `alone` then waits for that commit and
   * rejects with its failure).
   */
  function carryToolStep(): CarriedStep | undefined {
    const last = pending.at(-1);
    if (last === undefined || last.settlement !== undefined || failed !== undefined)
      return undefined;
    pending.pop();
    let sent: Promise<unknown> | undefined;
    const send = <T>(commit: () => Promise<T>): Promise<T> => {
      const commitment = flushing.then(commit);
      sent = commitment;
      track(commitment);
      return commitment;
    };
    return {
      reserveVia: (call) =>
        sent === undefined
          ? send(() => context.saveStepThenReserve(claim, last, call))
          : Promise.resolve(undefined),
      alone: () => (sent ?? send(() => saveAll([last]))).then(() => undefined),
    };
  }

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
      const index = modelCalls;
      const key = `model:${index}`;
      modelCalls += 1;
      streamed = '';
      cutOff = undefined;
      const saved = checkpoints.get(key) as ModelResultV1 | undefined;
      if (saved !== undefined) {
        recordToolCallIds(saved, toolCallIds);
        await flush();
        return saved;
      }
      const carried = carryToolStep();
      await flush();
      const called = context.gateway.generate({
        spender: {
          tenantId: claim.tenantId,
          userId: claim.userId,
          role: context.role,
          keyId: run.apiKeyId,
          agentId: agent.id,
          runId: run.id,
        },
        source: 'run',
        runStep: { threadId: run.threadId, key },
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
        onCharged: (usage) => {
          const output: ModelResultV1 = {
            text: streamed,
            toolCalls: [],
            finishReason: 'other',
            usage,
          };
          cutOff = { events, key, kind: 'model', output, usage };
        },
        ...(agent.degradation === null
          ? {}
          : {
              degrade: {
                atPercent: agent.degradation.atBudgetPercent,
                model: agent.degradation.model,
              },
            }),
        ...(carried === undefined
          ? {}
          : { reserveVia: carried.reserveVia, beforeWait: carried.alone }),
      });
      const result = carried === undefined ? await called : await afterCarried(called, carried);
      streamed = '';
      const { settlement, degraded: degradedCall, ...answer } = result;
      // Before anything keys on them (checkpoints, approvals, idempotency keys, the history).
      const output = uniqueToolCallIds(answer, { index, used: toolCallIds });
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
      const last = pending.at(-1);
      if (last?.settlement === undefined) return flush().then(() => undefined);
      pending.pop();
      const settled = last as SettledStepRecord;
      const steps = pending;
      pending = [];
      const result = flushing.then(async () => {
        await saveAll(steps);
        return { value: await merged(settled) };
      });
      track(result);
      return result;
    },
    async takeForFinish() {
      const cut = cutOff;
      cutOff = undefined;
      if (
        cut !== undefined ||
        pending.length > 1 ||
        pending[0]?.settlement === undefined ||
        failed !== undefined
      )
        await flush();
      await flushing;
      throwIfFailed();
      return cut ?? pending.pop();
    },
    async hold(step) {
      throwIfFailed();
      pending.push(step);
      // A core that goes straight on to its next model call (no I/O, no timer in between)
      // reaches it before this fires; one that waits for anything first has the step saved
      // on its own now, so a tool's effect is never left uncommitted while the core waits.
      setImmediate(() => {
        if (pending.includes(step)) flush().catch(() => undefined);
      });
    },
  };
}
