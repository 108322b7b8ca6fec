import pg from 'pg';
import type { Agent } from '../domain/agents/agent-types.ts';
import { AppError } from '../domain/errors.ts';
import type { UserPrincipal } from '../domain/identity/principal.ts';
import type { Tracing } from '../observability/tracing.ts';
import type { MemoryCapabilityV1, ToolOutcomeV1 } from '../plugin-api/index.ts';
import type { ReserveCall, ReserveRow } from '../storage/guards/budget-calls.ts';
import { type ReserveResult, refuseQuota } from '../storage/guards/budget-store.ts';
import type { RunCheckpoints } from '../storage/runs/run-checkpoints.ts';
import type { ArgumentsHasher } from '../storage/tools/arguments-hasher.ts';
import { announcementKey } from './announced-events.ts';
import type { GateResult } from './approval-gate.ts';
import type { EventWriter } from './event-writer.ts';
import type { RunClaim } from './run-executor.ts';
import type { RunModel } from './run-model.ts';
import { inToolSpan } from './run-spans.ts';
import { type StepRecord, saveStepWith, toSettledCheckpoint } from './step-record.ts';
import { gateToolCall } from './tool-approval-step.ts';
import { toolCalledAudit } from './tool-call-audit.ts';
import { missingConsent, type RequireConsent } from './tool-consent.ts';
import { executeTool, type ToolExecutionOptions } from './tool-execution.ts';
import type { ProvenanceFinding, ProvenanceSources } from './tools/provenance-rules.ts';
import { type ToolDefinition, validateToolInput } from './tools/tool-registry.ts';

/** Results of completed steps of a run, by step key (`model:N`, `tool:<callId>`). */
export type Checkpoints = Map<string, unknown>;

/** What a tool call runs within: the run, its agent, its events and its completed steps. */
export interface ToolCallContext {
  readonly claim: RunClaim;
  /** The API key that created the run: its daily tool-call quota counts the call. */
  readonly apiKeyId?: string | null | undefined;
  readonly agent: Agent;
  readonly events: EventWriter;
  readonly checkpoints: Checkpoints;
  readonly signal: AbortSignal;
  /** The run's user as the actor of audit events and the subject of role grants. */
  readonly actor?: UserPrincipal | undefined;
  /** The tools of this run's tenant (built-ins and tenant tools); defaults to the recorder's. */
  readonly tools?: readonly ToolDefinition[] | undefined;
  /**
   * The tools switched off for this agent or tenant-wide (kill switches), asked before every
   * call so a switch set while the run executes stops its next call.
   */
  readonly blocked?: (() => Promise<ReadonlySet<string>>) | undefined;
  /** Where argument values may come from (provenance rules). */
  readonly sources?: (() => ProvenanceSources) | undefined;
  /** Collects the vault secrets this run used, so the output guard can redact them. */
  readonly secrets?: Set<string> | undefined;
  /**
   * The run's model steps not committed yet (the one that asked for this call): committed
   * before anything of the call runs, with its quota count when it has one.
   */
  readonly modelSteps?: Pick<RunModel, 'flush' | 'commitWith' | 'hold'> | undefined;
  /** The run's memory capability, for the built-in memory tools. */
  readonly memory?: MemoryCapabilityV1 | undefined;
  /** Calls asked for before this execution, not carried out yet (see `callsAskedBefore`). */
  readonly askedBefore?: ReadonlySet<string> | undefined;
  /** What earlier executions of the run announced (see announced-events.ts). */
  readonly announced?: ReadonlySet<string> | undefined;
}

/** One tool call as the model made it. */
export interface ToolCallRequest {
  readonly toolCallId: string;
  readonly toolName: string;
  readonly input: unknown;
}

/** Records checkpointed steps and runs tool calls through the tool gate. */
export interface StepRecorder {
  saveStep(scope: RunClaim, step: StepRecord): Promise<void>;
  /**
   * Checkpoints a tool step with the budget reservation of the run's next model call, in one
   * transaction (migration 0032); when the database refused that statement (it
   * rolled back whole), the step is saved alone and undefined returned (the reservation then
   * goes out as usual).
   */
  saveStepThenReserve(
    scope: RunClaim,
    step: StepRecord,
    reservation: ReserveCall,
  ): Promise<ReserveRow | undefined>;
  callTool(context: ToolCallContext, call: ToolCallRequest): Promise<ToolOutcomeV1>;
}

/**
 * Creates the {@link StepRecorder}. A tool call is checked (is the tool granted to the agent,
 * are the arguments valid) before it runs; invalid calls go back to the model as errors and
 * nothing runs. Each completed step is stored in `run_steps` (RLS-scoped to the run's user),
 * so a resumed run replays it instead of repeating it (invariant 6); tools receive the
 * idempotency key `runId:tool:<callId>`.
 */
export function createStepRecorder(
  options: ToolExecutionOptions & {
    /** Where steps are checkpointed. */
    readonly checkpoints: RunCheckpoints;
    readonly tools: readonly ToolDefinition[];
    /** How long a pending approval stays decidable, in milliseconds. */
    readonly approvalTtlMs: number;
    /** Hashes arguments for `tool.called` and approvals (keyed per tenant with a vault key). */
    readonly argumentsHasher: ArgumentsHasher;
    /** Counts a tool call against the daily tool-call quotas; throws `quota_exceeded`. */
    readonly consumeToolQuota?: (
      claim: RunClaim,
      binding: { readonly agentId: string; readonly keyId: string | null },
    ) => Promise<void>;
    /** One `execute_tool` span per call (GenAI semantic conventions). */
    readonly tracing?: Tracing | undefined;
    /**
     * Throws `consent_required` unless the user granted `purpose` for `scope` (the agent's id)
     * or for `*` (the consent service). Without it, tools that need consent are refused.
     */
    readonly requireConsent?: RequireConsent | undefined;
  },
): StepRecorder {
  async function saveStep(scope: RunClaim, step: StepRecord): Promise<void> {
    await saveStepWith(step, async (batch, checkpoint) => ({
      crossed: await options.checkpoints.saveStep(scope, batch, checkpoint),
      value: undefined,
    }));
  }

  async function saveStepThenReserve(
    scope: RunClaim,
    step: StepRecord,
    reservation: ReserveCall,
  ): Promise<ReserveRow | undefined> {
    return saveStepWith(step, async (batch, checkpoint) => {
      try {
        const row = await options.checkpoints.saveStepThenReserve(scope, batch, {
          step: checkpoint,
          reservation,
        });
        return { crossed: 0, value: row };
      } catch (error) {
        // Any other failure (the connection broke) leaves unknown whether it committed: the
        // run fails, as a failed checkpoint alone would make it.
        if (!(error instanceof pg.DatabaseError)) throw error;
        await options.checkpoints.saveStep(scope, batch, checkpoint);
        return { crossed: 0, value: undefined };
      }
    });
  }

  /** Undefined when the call may run, else the quota refusal the model is told about. */
  async function checkQuota(context: ToolCallContext): Promise<string | undefined> {
    const consume = options.consumeToolQuota;
    if (consume === undefined) return undefined;
    const binding = { agentId: context.agent.id, keyId: context.apiKeyId ?? null };
    try {
      // The model step that asked for the call commits with its count: one transaction.
      const merged = await context.modelSteps?.commitWith((step) =>
        saveStepWith(step, async (batch) => {
          const { crossed, verdict } = await options.checkpoints.saveStepThenConsumeQuota(
            context.claim,
            batch,
            { step: toSettledCheckpoint(step), binding },
          );
          return { crossed, value: verdict };
        }),
      );
      if (merged === undefined) await consume(context.claim, binding);
      else refuseQuota('tool_calls', merged.value as ReserveResult | undefined);
      return undefined;
    } catch (error) {
      if (error instanceof AppError && error.code === 'quota_exceeded') return error.message;
      throw error;
    }
  }

  /** Why a call may not run before its arguments are even looked at; undefined if it may. */
  async function refusal(
    context: ToolCallContext,
    call: ToolCallRequest,
    tool: ToolDefinition | undefined,
  ) {
    if (tool === undefined)
      return {
        code: 'not_available',
        message: `Tool '${call.toolName}' is not available to this agent.`,
      };
    if ((await context.blocked?.())?.has(tool.name) === true)
      return { code: 'disabled', message: `Tool '${tool.name}' is disabled by an administrator.` };
    const role = context.actor?.role;
    if (
      tool.allowedRoles !== undefined &&
      (role === undefined || !tool.allowedRoles.includes(role))
    )
      return { code: 'role_not_granted', message: `Your role may not use tool '${tool.name}'.` };
    return missingConsent({ requireConsent: options.requireConsent, context, tool });
  }

  async function callTool(context: ToolCallContext, call: ToolCallRequest): Promise<ToolOutcomeV1> {
    const tracing = options.tracing;
    if (tracing === undefined || context.checkpoints.has(`tool:${call.toolCallId}`))
      return callToolUntraced(context, call);
    return inToolSpan(tracing, { ...call, claim: context.claim }, () =>
      callToolUntraced(context, call),
    );
  }

  async function callToolUntraced(
    context: ToolCallContext,
    call: ToolCallRequest,
  ): Promise<ToolOutcomeV1> {
    const key = `tool:${call.toolCallId}`;
    const saved = context.checkpoints.get(key);
    if (saved !== undefined) return saved as ToolOutcomeV1;
    // Started already when an earlier execution asked for its approval (or crashed in it):
    // a call of a checkpointed model step whose start is stored. (A model step a crash cut off
    // before its checkpoint is asked again, and its new calls may reuse the ids.)
    const announced =
      context.askedBefore?.has(call.toolCallId) === true &&
      context.announced?.has(announcementKey('tool-call-started', call.toolCallId)) === true;
    if (!announced)
      context.events.push('tool-call-started', {
        toolCallId: call.toolCallId,
        toolName: call.toolName,
        input: call.input,
      });
    const available = context.tools ?? options.tools;
    const tool = context.agent.tools.includes(call.toolName)
      ? available.find((candidate) => candidate.name === call.toolName)
      : undefined;
    let outcome: ToolOutcomeV1;
    let gate: GateResult | undefined;
    let findings: readonly ProvenanceFinding[] = [];
    let auditOutcome = 'ok';
    let hashed: string | undefined;
    const hashOf = (value: unknown) =>
      options.argumentsHasher.hash({ tenantId: context.claim.tenantId, value });
    const refused = await refusal(context, call, tool);
    if (refused !== undefined || tool === undefined) {
      auditOutcome = refused?.code ?? 'not_available';
      outcome = {
        status: 'error',
        message: refused?.message ?? 'Tool not available.',
        code: auditOutcome,
      };
    } else {
      const problems = validateToolInput(tool.inputSchema, call.input);
      if (problems.length === 0) {
        ({ findings, gate } = await gateToolCall({
          context,
          call,
          tool,
          approval: { ttlMs: options.approvalTtlMs, hasher: options.argumentsHasher },
        }));
      }
      // Only a call that will run counts against the daily tool-call quota.
      const quota =
        problems.length === 0 && gate?.kind !== 'refused' ? await checkQuota(context) : undefined;
      if (problems.length > 0) {
        outcome = {
          status: 'error',
          message: `Invalid arguments: ${problems.join('; ')}`,
          code: 'invalid_arguments',
        };
        auditOutcome = 'invalid_arguments';
      } else if (gate?.kind === 'refused') {
        outcome = { status: 'error', message: gate.message, code: gate.code };
        auditOutcome = gate.code;
      } else if (quota !== undefined) {
        outcome = { status: 'error', message: quota, code: 'quota_exceeded' };
        auditOutcome = 'quota_exceeded';
      } else {
        await context.modelSteps?.flush();
        // Hashed before the call runs: a key provider that fails then stops the call before
        // the tool acts, not after it with its result left unrecorded.
        hashed = await hashOf(gate?.input ?? call.input);
        outcome = await executeTool(options, context, {
          tool,
          input: gate?.input ?? call.input,
          key,
        });
        auditOutcome =
          outcome.status === 'ok'
            ? 'ok'
            : outcome.code === 'consent_required'
              ? 'consent_required'
              : 'failed';
      }
    }
    context.events.push('tool-call-finished', {
      toolCallId: call.toolCallId,
      toolName: call.toolName,
      status: outcome.status,
    });
    await context.modelSteps?.flush();
    const step: StepRecord = {
      events: context.events,
      key,
      kind: 'tool',
      output: outcome,
      audit: {
        actor: context.actor,
        record: toolCalledAudit({
          runId: context.claim.runId,
          call,
          tool,
          agent: context.agent,
          argumentsHash:
            hashed ?? (await hashOf(gate?.kind === 'approved' ? gate.input : call.input)),
          findings,
          approvalId: gate?.approvalId ?? null,
          outcome: auditOutcome,
        }),
      },
    };
    // A run's tool step commits with the next thing the run sends (the next model call's
    // budget reservation, another step, its finish; see RunModel.hold), which follows at once.
    if (context.modelSteps === undefined) await saveStep(context.claim, step);
    else await context.modelSteps.hold(step);
    context.checkpoints.set(key, outcome);
    return outcome;
  }

  return { saveStep, saveStepThenReserve, callTool };
}
