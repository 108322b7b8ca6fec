import { sql } from 'kysely';
import type { Agent } from '../domain/agents/agent-types.ts';
import { AppError } from '../domain/errors.ts';
import type { ModelResultV1, ToolOutcomeV1 } from '../plugin-api/index.ts';
import { passApprovalGate } from './approval-gate.ts';
import type { EventWriter } from './event-writer.ts';
import type { RunClaim } from './run-executor.ts';
import { type ToolDefinition, validateToolInput } from './tools/tool-registry.ts';

/** Results of completed steps of a run, by step key (`model:N`, `tool:<callId>`). */
export type Checkpoints = Map<string, unknown>;

/** A completed step to checkpoint, with the events buffered while it ran. */
export interface StepRecord {
  readonly events: EventWriter;
  readonly key: string;
  readonly kind: 'model' | 'tool';
  readonly output: unknown;
  readonly usage?: ModelResultV1['usage'];
}

/** What a tool call runs within: the run, its agent, its events and its completed steps. */
export interface ToolCallContext {
  readonly claim: RunClaim;
  readonly agent: Agent;
  readonly events: EventWriter;
  readonly checkpoints: Checkpoints;
  readonly signal: AbortSignal;
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
  callTool(context: ToolCallContext, call: ToolCallRequest): Promise<ToolOutcomeV1>;
}

/**
 * Creates the {@link StepRecorder}. A tool call is checked (is the tool granted to the agent,
 * are the arguments valid) before it runs; invalid calls go back to the model as errors and
 * nothing runs. Each completed step is stored in `run_steps` (RLS-scoped to the run's user),
 * so a resumed run replays it instead of repeating it (invariant 6); tools receive the
 * idempotency key `runId:tool:<callId>`.
 */
export function createStepRecorder(options: {
  readonly tools: readonly ToolDefinition[];
  readonly toolOutputLimit: number;
  readonly toolTimeoutMs: number;
  /** How long a pending approval stays decidable, in milliseconds. */
  readonly approvalTtlMs: number;
  /** Counts a tool call against the daily tool-call quotas; throws `quota_exceeded`. */
  readonly consumeToolQuota?: (claim: RunClaim, agentId: string) => Promise<void>;
}): StepRecorder {
  const { toolOutputLimit, toolTimeoutMs } = options;
  async function saveStep(scope: RunClaim, step: StepRecord): Promise<void> {
    // The step's buffered events commit with its checkpoint: one transaction per step.
    await step.events.inTransaction(async (db, append) => {
      await append([]);
      // The checkpoint and the usage it adds: one statement.
      await sql`
        with step as (
          insert into brigade.run_steps (tenant_id, user_id, run_id, step_key, kind, output)
          values (${scope.tenantId}, ${scope.userId}, ${scope.runId}, ${step.key}, ${step.kind},
                  ${JSON.stringify(step.output)}::jsonb)
          on conflict do nothing
          returning 1)
        update brigade.runs
           set step_count = step_count + (select count(*) from step),
               input_tokens = input_tokens + ${step.usage?.inputTokens ?? 0},
               output_tokens = output_tokens + ${step.usage?.outputTokens ?? 0}
         where id = ${scope.runId}`.execute(db);
    });
  }

  /** Undefined when the call may run, else the quota refusal the model is told about. */
  async function checkQuota(context: ToolCallContext): Promise<string | undefined> {
    if (options.consumeToolQuota === undefined) return undefined;
    try {
      await options.consumeToolQuota(context.claim, context.agent.id);
      return undefined;
    } catch (error) {
      if (error instanceof AppError && error.code === 'quota_exceeded') return error.message;
      throw error;
    }
  }

  async function callTool(context: ToolCallContext, call: ToolCallRequest): Promise<ToolOutcomeV1> {
    const key = `tool:${call.toolCallId}`;
    const saved = context.checkpoints.get(key);
    if (saved !== undefined) return saved as ToolOutcomeV1;
    context.events.push('tool-call-started', {
      toolCallId: call.toolCallId,
      toolName: call.toolName,
      input: call.input,
    });
    const tool = context.agent.tools.includes(call.toolName)
      ? options.tools.find((candidate) => candidate.name === call.toolName)
      : undefined;
    let outcome: ToolOutcomeV1;
    if (tool === undefined) {
      outcome = {
        status: 'error',
        message: `Tool '${call.toolName}' is not available to this agent.`,
      };
    } else {
      const problems = validateToolInput(tool.inputSchema, call.input);
      const gate =
        problems.length === 0 && context.agent.approvalRequiredTools.includes(call.toolName)
          ? await passApprovalGate({
              claim: context.claim,
              events: context.events,
              call,
              ttlMs: options.approvalTtlMs,
            })
          : ({ kind: 'approved', input: call.input } as const);
      // Only a call that will run counts against the daily tool-call quota.
      const quota =
        problems.length === 0 && gate.kind !== 'refused' ? await checkQuota(context) : undefined;
      if (problems.length > 0) {
        outcome = { status: 'error', message: `Invalid arguments: ${problems.join('; ')}` };
      } else if (gate.kind === 'refused') {
        outcome = { status: 'error', message: gate.message };
      } else if (quota !== undefined) {
        outcome = { status: 'error', message: quota };
      } else {
        const timeout = AbortSignal.timeout(toolTimeoutMs);
        const signal = AbortSignal.any([context.signal, timeout]);
        try {
          const output = await Promise.race([
            tool.execute(gate.input as Record<string, unknown>, {
              idempotencyKey: `${context.claim.runId}:${key}`,
              signal,
            }),
            new Promise<never>((_, reject) =>
              signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
            ),
          ]);
          const json = JSON.stringify(output) ?? 'null';
          outcome =
            json.length > toolOutputLimit
              ? {
                  status: 'ok',
                  output: { truncated: true, preview: json.slice(0, toolOutputLimit) },
                }
              : { status: 'ok', output };
        } catch (error) {
          context.signal.throwIfAborted();
          outcome = {
            status: 'error',
            message: timeout.aborted
              ? `Tool timed out after ${toolTimeoutMs} ms.`
              : (error as Error).message,
          };
        }
      }
    }
    context.events.push('tool-call-finished', {
      toolCallId: call.toolCallId,
      toolName: call.toolName,
      status: outcome.status,
    });
    await saveStep(context.claim, { events: context.events, key, kind: 'tool', output: outcome });
    context.checkpoints.set(key, outcome);
    return outcome;
  }

  return { saveStep, callTool };
}
