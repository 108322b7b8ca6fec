import { AppError } from '../domain/errors.ts';
import type { UserPrincipal } from '../domain/identity/principal.ts';
import { activeSpan } from '../observability/tracing.ts';
import type { MessageV1 } from '../plugin-api/index.ts';
import { createRunCheckpoints, type SuccessorClaim } from '../storage/runs/run-checkpoints.ts';
import { claimTakenOver, dropQueueEntry, runExists } from '../storage/runs/run-claim.ts';
import { announcedEvents, announcementKey } from './announced-events.ts';
import { parkOrRequeue, RunParkedError } from './approval-gate.ts';
import { createEventWriter } from './event-writer.ts';
import { windowHistory } from './history-window.ts';
import type {
  AbortReason,
  RunClaim,
  RunExecutor,
  RunExecutorOptions,
} from './run-executor-types.ts';
import {
  abortReasonOf,
  cancelledOutcome,
  createRunFinisher,
  outcomeOfError,
} from './run-finish.ts';
import { type LoadedRun, loadRun, provenanceSources, toCoreMessage } from './run-loader.ts';
import { createRunMemory } from './run-memory.ts';
import { createRunModel } from './run-model.ts';
import { inRunSpan } from './run-spans.ts';
import { createStepRecorder } from './run-steps.ts';
import { callsAskedBefore } from './tool-approval-step.ts';
import { createOutputGuard, createStreamGuard } from './tools/output-guard.ts';

export type {
  AbortReason,
  ExecutorLogger,
  RunClaim,
  RunExecutor,
  RunExecutorOptions,
} from './run-executor-types.ts';

/** Creates the {@link RunExecutor}: checkpointed model and tool steps, events, final state. */
export function createRunExecutor(options: RunExecutorOptions): RunExecutor {
  const { database, gateway, logger } = options;
  const runCheckpoints = createRunCheckpoints(database);
  const { saveStep, saveStepThenReserve, callTool } = createStepRecorder({
    checkpoints: runCheckpoints,
    tools: options.tools,
    toolOutputLimit: options.toolOutputLimit ?? 64 * 1024,
    toolTimeoutMs: options.toolTimeoutMs ?? 30_000,
    approvalTtlMs: options.approvalTtlMs ?? 24 * 3_600_000,
    argumentsHasher: options.argumentsHasher,
    resolveCredential: options.resolveCredential,
    requireConsent: options.requireConsent,
    redact: (text, secrets) =>
      createOutputGuard({ secrets: () => secrets, allowedLinkHosts: [] }).redact(text).text,
    ...(options.consumeToolQuota === undefined
      ? {}
      : { consumeToolQuota: options.consumeToolQuota }),
    tracing: options.tracing,
  });

  const finish = createRunFinisher({
    checkpoints: runCheckpoints,
    signals: options.signals,
    metrics: options.metrics,
    saveStep,
  });

  return {
    async execute(claim, controller, successors) {
      const cores = [...options.cores.keys()];
      const loaded = await loadRun(database, claim, { cores, now: new Date() });
      // Gone (deleted with its thread): its queue entry must not be claimed again and again.
      if (loaded === undefined) return dropQueueEntry(database, claim);
      // The run's spans carry its thread as well.
      const held: RunClaim = { ...claim, threadId: loaded.run.threadId };
      const { tracing } = options;
      if (tracing === undefined) return execute(held, loaded, { controller, successors });
      return inRunSpan(tracing, { claim: held, loaded }, () =>
        execute(held, loaded, { controller, successors }),
      );
    },
  };

  async function execute(
    claim: RunClaim,
    loaded: LoadedRun,
    {
      controller,
      successors,
    }: { controller: AbortController; successors: SuccessorClaim | undefined },
  ): Promise<void> {
    const { run, agent, checkpoints, role } = loaded;
    const askedBefore = callsAskedBefore(checkpoints);
    /** Tool calls of this execution still running. */
    const toolCalls = new Set<Promise<unknown>>();
    const track = <T>(call: Promise<T>): Promise<T> => {
      toolCalls.add(call);
      const done = () => toolCalls.delete(call);
      call.then(done, done);
      return call;
    };
    // What the model is sent: set from the history window before the core starts.
    let history: MessageV1[] = [...loaded.earlier, ...loaded.own].map(toCoreMessage);
    // Tenant tools shadow nothing: a built-in name wins (the API refuses such names anyway).
    const baseTools = [
      ...options.tools,
      ...(options.tenantTool === undefined
        ? []
        : loaded.tenantTools
            .filter((definition) => !options.tools.some((tool) => tool.name === definition.name))
            .map(options.tenantTool)),
    ];
    const actor: UserPrincipal | undefined =
      role === undefined
        ? undefined
        : {
            kind: 'user',
            tenantId: claim.tenantId,
            userId: claim.userId,
            role,
            keyId: run.apiKeyId ?? undefined,
            scopes: undefined,
            authMethod: 'api_key',
          };
    const secrets = new Set<string>();
    const outputGuard = createOutputGuard({
      secrets: () => secrets,
      allowedLinkHosts: options.allowedLinkHosts ?? [],
      redactPii: options.redactPii ?? [],
    });
    const streamGuard = createStreamGuard(outputGuard);
    /**
     * The switches read when the run started (fresh: the offered tools left them out) and
     * those in force now: a switch set meanwhile applies to the next call; one lifted
     * meanwhile applies when the run next starts or resumes (its tool was not offered anyway).
     */
    const blockedNow = async (agentId: string): Promise<ReadonlySet<string>> => {
      const now = await options.blockedTools?.({ tenantId: claim.tenantId, agentId });
      return now === undefined ? loaded.blocked : new Set([...loaded.blocked, ...now]);
    };
    const sources = () => provenanceSources(loaded, history);
    const events = createEventWriter({
      database,
      claim,
      nextSeq: loaded.nextSeq,
      sink: options.signals,
      // A write refused by the claim fence: stop at once, as a lost heartbeat would.
      onClaimLost: () => controller.abort('claim-lost' satisfies AbortReason),
      ...(options.eventFlushMs === undefined ? {} : { flushMs: options.eventFlushMs }),
      ...(options.eventBatcher === undefined ? {} : { batcher: options.eventBatcher }),
    });
    if (run.status !== 'queued' && run.status !== 'running' && run.status !== 'requires_action')
      return dropQueueEntry(database, claim);
    if (agent === undefined) {
      await finish(
        claim,
        {
          status: 'failed',
          errorCode: 'agent_not_found',
          errorMessage: 'The agent was deleted.',
        },
        { events, successors },
      );
      return;
    }
    const core = options.cores.get(agent.coreId);
    if (core === undefined) {
      await finish(
        claim,
        {
          status: 'failed',
          errorCode: 'core_not_found',
          errorMessage: `No core named '${agent.coreId}'.`,
        },
        { events, successors },
      );
      return;
    }
    // The load started the run (its agent and core exist, checked above in the same way).
    // A read-committed script: a cancel or a deleted agent committed between its reads and
    // the start leaves the run unstarted, and it ends as such (or only loses its queue entry).
    const { started } = loaded;
    if (started === undefined) {
      await finish(
        claim,
        { status: 'failed', errorCode: 'agent_not_found', errorMessage: 'The agent was deleted.' },
        { events, successors },
      );
      return;
    }
    const deadline = started.deadline.getTime();
    options.signals.runChanged(run.id, {
      userId: claim.userId,
      events: [
        {
          runId: run.id,
          seq: started.seq,
          type: started.type,
          data: { runId: run.id },
          createdAt: new Date(),
        },
      ],
    });
    const timer = setTimeout(
      () => controller.abort('timeout' satisfies AbortReason),
      Math.max(0, deadline - Date.now()),
    );
    const model = createRunModel({
      database,
      gateway,
      saveStep,
      saveStepThenReserve,
      claim,
      run,
      agent,
      role,
      deadline: new Date(deadline),
      signal: controller.signal,
      events,
      checkpoints,
    });
    let announced: ReadonlySet<string> = new Set(); // sent by earlier executions: not again
    try {
      if (run.status === 'running' || run.startedAt !== null) {
        announced = await announcedEvents(database, claim);
        // Resumed: a model call the previous process had in flight left its reservation.
        const resolved = await options.resolveOrphans?.(claim);
        if (resolved !== undefined && resolved > 0)
          logger.warn({ runId: run.id, resolved }, 'resolved orphaned budget reservations');
        const cancelled = await database.withScope(claim, (db) =>
          db
            .selectFrom('brigade.runs')
            .select('cancel_requested_at')
            .where('id', '=', claim.runId)
            .executeTakeFirst(),
        );
        if (cancelled?.cancel_requested_at != null)
          controller.abort('cancel' satisfies AbortReason);
      }
      // MCP tools: the servers' tool lists (cached), read with the run's user's credential.
      const mcpNames = agent.tools.filter((name) => name.startsWith('mcp:'));
      const runTools = [
        ...baseTools,
        ...(options.mcpTools === undefined || mcpNames.length === 0
          ? []
          : await options.mcpTools({ claim, actor, names: mcpNames, signal: controller.signal })),
      ];
      const offered = runTools
        .filter((tool) => agent.tools.includes(tool.name))
        .filter((tool) => !loaded.blocked.has(tool.name))
        .map(({ name, description, inputSchema }) => ({ name, description, inputSchema }));
      const sent = windowHistory({
        earlier: loaded.earlier.map(toCoreMessage),
        own: loaded.own.map(toCoreMessage),
        maxMessages: agent.historyMessages,
        contextTokens: await options.contextWindow?.(agent.model, claim.tenantId),
        outputTokens: agent.maxOutputTokens,
        instructions: agent.instructions,
        tools: offered,
      });
      history = sent.messages;
      const memory =
        options.memory &&
        createRunMemory({
          memory: options.memory,
          claim,
          threadId: run.threadId,
          commitPending: () => model.flush(),
          signal: controller.signal,
        });
      if (sent.dropped > 0) activeSpan()?.setAttribute('brigade.history.dropped', sent.dropped);
      const result = await core.run({
        runId: run.id,
        instructions: agent.instructions,
        messages: history,
        maxSteps: agent.maxSteps,
        signal: controller.signal,
        emit: (event) => {
          if (event.type === 'message-delta') {
            const safe = streamGuard.push(event.text);
            if (safe.length > 0) events.delta(safe);
            return;
          }
          if (event.type === 'step-finished') {
            const rest = streamGuard.flush();
            if (rest.length > 0) events.delta(rest);
          }
          // A replayed step was announced by the execution that made it.
          if (announced.has(announcementKey(event.type, event.step))) return;
          events.push(event.type, { step: event.step });
        },
        logger: {
          info: (message, fields) => logger.info({ runId: run.id, ...fields }, message),
          warn: (message, fields) => logger.warn({ runId: run.id, ...fields }, message),
        },
        model: model.capability,
        ...(memory === undefined ? {} : { memory }),
        tools: {
          available: offered,
          call: (call) =>
            track(
              callTool(
                {
                  claim,
                  apiKeyId: run.apiKeyId,
                  agent,
                  events,
                  checkpoints,
                  signal: controller.signal,
                  actor,
                  tools: runTools,
                  blocked: () => blockedNow(agent.id),
                  sources,
                  secrets,
                  // The model step that asked for the call commits before anything of it runs.
                  modelSteps: model,
                  memory,
                  askedBefore,
                  announced,
                },
                call,
              ),
            ),
        },
      });
      const rest = streamGuard.flush();
      if (rest.length > 0) events.delta(rest);
      // The output guard: no secret and no link to a host not allowed leaves in the answer.
      const guarded = outputGuard.guard(result.text);
      if (guarded.redacted > 0 || guarded.redactedPii > 0 || guarded.blockedLinks > 0)
        logger.warn(
          {
            runId: run.id,
            redacted: guarded.redacted,
            redactedPii: guarded.redactedPii,
            blockedLinks: guarded.blockedLinks,
          },
          'output guard changed the answer',
        );
      // The last model step commits with the finish, in its transaction.
      const finished = await finish(
        claim,
        {
          status: 'completed',
          text: guarded.text,
          // A core that stopped short (its step limit, the output limit, a content filter)
          // says so: the answer is marked incomplete, not passed off as a whole one.
          ...(result.finishReason === 'stop' ? {} : { incompleteReason: result.finishReason }),
        },
        { events, successors, step: await model.takeForFinish() },
      );
      if (finished === 'cancelled-late')
        await finish(claim, cancelledOutcome, { events, successors });
    } catch (error) {
      if (error instanceof RunParkedError) {
        // Waiting for the user. The step's other calls run on (a core gives up on them when one
        // parks): they finish and are recorded first, so a resumed run never repeats one.
        while (toolCalls.size > 0) await Promise.allSettled([...toolCalls]);
        await model.flush().catch(() => undefined);
        await events.flush();
        // Then the queue entry is parked (no slot held), or queued again if every approval
        // was decided meanwhile; unless the run was cancelled meanwhile: it ends (below).
        if (abortReasonOf(controller.signal) !== 'cancel') {
          if ((await parkOrRequeue(events, claim)) === 'requeued') options.signals?.queueChanged();
          return;
        }
      }
      const reason = abortReasonOf(controller.signal);
      if (reason === 'shutdown') {
        // Stopping: the steps done so far are kept, so the run resumes after them.
        await model.flush().catch(() => undefined);
        throw error;
      }
      // Resumed by another process (this one missed heartbeats): the outcome is theirs.
      if (reason === 'claim-lost' || (await claimTakenOver(database, claim).catch(() => false)))
        return logger.warn({ runId: run.id }, 'run no longer claimed here; stopped');
      if (!(await runExists(database, claim))) {
        // Deleted with its thread while it ran: no outcome to record, and nothing went wrong.
        logger.info({ runId: run.id }, 'run deleted with its thread while it ran');
        return dropQueueEntry(database, claim);
      }
      if (reason === undefined && !(error instanceof AppError))
        logger.error({ runId: run.id, err: { message: (error as Error).message } }, 'run failed');
      const step = await model.takeForFinish().catch(() => undefined);
      await finish(
        claim,
        outcomeOfError(error, {
          reason,
          agent,
          streamed: model.streamed(),
          // The partial answer leaves through the output guard like a full one.
          guard: (text) => outputGuard.guard(text).text,
        }),
        { events, successors, step },
      );
    } finally {
      clearTimeout(timer);
      events.close();
    }
  }
}
