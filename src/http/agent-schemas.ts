import { z } from '@hono/zod-openapi';
import type { Agent, Message, Run, Thread } from '../domain/agents/agent-types.ts';
import { metadataSchema } from './schemas.ts';

const agentFields = {
  name: z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9_-]{0,62}$/,
      'lower-case letters, digits, _ and -, up to 63 characters',
    ),
  description: z.string().max(1000).nullable(),
  instructions: z.string().max(100_000),
  model: z.string().min(1).max(200).openapi({
    description: 'Model route or `provider:model`; `local` is the built-in offline model.',
  }),
  tools: z.array(z.string().min(1).max(100)).max(64),
  coreId: z.string().min(1).max(100),
  maxSteps: z.int().min(1).max(100),
  runTimeoutMs: z.int().min(1000).max(3_600_000),
  maxOutputTokens: z.int().min(1).max(200_000),
  approvalRequiredTools: z.array(z.string().min(1).max(100)).max(64).openapi({
    description:
      'Tools whose every call pauses the run until the user approves, rejects or edits it.',
  }),
  consentRequiredTools: z.array(z.string().min(1).max(100)).max(64).openapi({
    description:
      "Tools whose calls need the calling user's consent `tool:<tool name>` (granted with scope `*` or this agent's id); without it the call fails with `consent_required` and nothing runs.",
  }),
  degradation: z
    .strictObject({
      atBudgetPercent: z.int().min(1).max(100),
      model: z.string().min(1).max(200),
    })
    .nullable()
    .openapi({
      description:
        'Past `atBudgetPercent` % of any budget binding a run (used + reserved), its model calls go to `model` (a cheaper model or route).',
    }),
  onDeadline: z.enum(['fail', 'partial']).openapi({
    description:
      '`fail`: a run past its deadline expires. `partial`: it completes with the text streamed so far, marked incomplete.',
  }),
  historyMessages: z.int().min(1).max(10_000).nullable().openapi({
    description:
      "How many of the thread's earlier messages each run sends to the model, the newest (the run's input always goes; a cut window starts at a user message). Null: every earlier message that fits the model's context window; older ones are left out when a long thread no longer fits.",
  }),
  metadata: metadataSchema,
};

export const createAgentSchema = z
  .strictObject({
    name: agentFields.name,
    description: agentFields.description.default(null),
    instructions: agentFields.instructions.default(''),
    model: agentFields.model.default('local'),
    tools: agentFields.tools.default([]),
    coreId: agentFields.coreId.default('tool-loop'),
    maxSteps: agentFields.maxSteps.default(8),
    runTimeoutMs: agentFields.runTimeoutMs.default(120_000),
    maxOutputTokens: agentFields.maxOutputTokens.default(1024),
    approvalRequiredTools: agentFields.approvalRequiredTools.default([]),
    consentRequiredTools: agentFields.consentRequiredTools.default([]),
    degradation: agentFields.degradation.default(null),
    onDeadline: agentFields.onDeadline.default('fail'),
    historyMessages: agentFields.historyMessages.default(null),
    metadata: agentFields.metadata.default({}),
  })
  .openapi('CreateAgentRequest');

export const updateAgentSchema = z
  .strictObject({
    name: agentFields.name.optional(),
    description: agentFields.description.optional(),
    instructions: agentFields.instructions.optional(),
    model: agentFields.model.optional(),
    tools: agentFields.tools.optional(),
    coreId: agentFields.coreId.optional(),
    maxSteps: agentFields.maxSteps.optional(),
    runTimeoutMs: agentFields.runTimeoutMs.optional(),
    maxOutputTokens: agentFields.maxOutputTokens.optional(),
    approvalRequiredTools: agentFields.approvalRequiredTools.optional(),
    consentRequiredTools: agentFields.consentRequiredTools.optional(),
    degradation: agentFields.degradation.optional(),
    onDeadline: agentFields.onDeadline.optional(),
    historyMessages: agentFields.historyMessages.optional(),
    metadata: agentFields.metadata.optional(),
  })
  .refine((value) => Object.keys(value).length > 0, 'at least one field is required')
  .openapi('UpdateAgentRequest');

export const agentSchema = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid(),
    name: z.string(),
    description: z.string().nullable(),
    instructions: z.string(),
    model: z.string(),
    tools: z.array(z.string()),
    coreId: z.string(),
    maxSteps: z.int(),
    runTimeoutMs: z.int(),
    maxOutputTokens: z.int(),
    approvalRequiredTools: z.array(z.string()),
    consentRequiredTools: z.array(z.string()),
    degradation: z.object({ atBudgetPercent: z.int(), model: z.string() }).nullable(),
    onDeadline: z.enum(['fail', 'partial']),
    historyMessages: z.int().nullable(),
    metadata: z.record(z.string(), z.unknown()),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Agent');

export const createThreadSchema = z
  .strictObject({
    title: z.string().trim().min(1).max(500).nullable().default(null),
    metadata: metadataSchema.default({}),
  })
  .openapi('CreateThreadRequest');

export const threadSchema = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid(),
    userId: z.uuid(),
    title: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Thread');

export const messageSchema = z
  .object({
    id: z.uuid(),
    threadId: z.uuid(),
    runId: z.uuid().nullable(),
    seq: z.int(),
    role: z.enum(['user', 'assistant', 'tool', 'system']),
    content: z.array(z.record(z.string(), z.unknown())),
    provenance: z.string(),
    inputTokens: z.int().nullable(),
    outputTokens: z.int().nullable(),
    createdAt: z.iso.datetime(),
  })
  .openapi('Message');

export const createRunSchema = z
  .strictObject({
    agentId: z.string().min(1).max(100),
    input: z
      .string()
      .min(1)
      .max(200_000)
      .optional()
      .openapi({ description: 'A new user message appended to the thread.' }),
    strategy: z
      .enum(['reject', 'enqueue', 'interrupt', 'rollback'])
      .default('enqueue')
      .openapi({ description: 'What to do if the thread already has an active run.' }),
    priority: z.enum(['interactive', 'batch']).default('interactive').openapi({
      description:
        'Interactive runs are started before batch runs of the same organisation; organisations share capacity fairly either way.',
    }),
    stream: z
      .boolean()
      .default(false)
      .openapi({ description: 'Answer with the run’s event stream (SSE) instead of JSON.' }),
  })
  .openapi('CreateRunRequest');

export const runSchema = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid(),
    threadId: z.uuid(),
    userId: z.uuid(),
    agentId: z.uuid(),
    status: z.enum([
      'queued',
      'running',
      'requires_action',
      'completed',
      'failed',
      'cancelled',
      'expired',
    ]),
    strategy: z.enum(['reject', 'enqueue', 'interrupt', 'rollback']),
    priority: z.enum(['interactive', 'batch']),
    errorCode: z.string().nullable(),
    errorMessage: z.string().nullable(),
    errorDetails: z.record(z.string(), z.unknown()).nullable().openapi({
      description:
        'Structured details of a refusal that failed the run, else null. `budget_exceeded`: `policyId`, `level`, `period`, `limitUsd`, `remainingUsd` (what was left), `requiredUsd` (the refused call’s priced worst case) and `resetsAt` (when the period resets; for a rolling budget, when its oldest spending leaves the window). `quota_exceeded`: `policyId`, `level`, `limit`, `used`, `resetsAt`. `rate_limited` (a tokens-per-minute or concurrent-model-call policy until the deadline): `policyId`, `level`, `limit`.',
    }),
    incomplete: z.object({ reason: z.string() }).nullable().openapi({
      description:
        'Set when the answer is partial: `reason` is `deadline` (the run’s deadline came first, with the agent’s `onDeadline: partial`), `max-steps` (the agent’s step limit), `length` (the output limit) or `content-filter`.',
    }),
    degraded: z.boolean().openapi({
      description: "True when budget pressure moved the run to its agent's degradation model.",
    }),
    usage: z.object({ inputTokens: z.int(), outputTokens: z.int() }),
    stepCount: z.int(),
    createdAt: z.iso.datetime(),
    startedAt: z.iso.datetime().nullable(),
    completedAt: z.iso.datetime().nullable(),
    queueWaitMs: z.int().min(0).nullable().openapi({
      description:
        'Milliseconds from creation until a scheduler first claimed the run; null until it started.',
    }),
  })
  .openapi('Run');

const iso = (date: Date | null) => (date === null ? null : date.toISOString());

/** Renders an agent. */
export const agentResponse = (agent: Agent) => ({
  ...agent,
  tools: [...agent.tools],
  approvalRequiredTools: [...agent.approvalRequiredTools],
  consentRequiredTools: [...agent.consentRequiredTools],
  degradation: agent.degradation === null ? null : { ...agent.degradation },
  metadata: { ...agent.metadata },
  createdAt: agent.createdAt.toISOString(),
  updatedAt: agent.updatedAt.toISOString(),
});

/** Renders a thread. */
export const threadResponse = (thread: Thread) => ({
  ...thread,
  metadata: { ...thread.metadata },
  createdAt: thread.createdAt.toISOString(),
  updatedAt: thread.updatedAt.toISOString(),
});

/** Renders a message. */
export const messageResponse = (message: Message) => ({
  ...message,
  content: message.content.map((part) => ({ ...part }) as Record<string, unknown>),
  createdAt: message.createdAt.toISOString(),
});

/** Renders a run. */
export const runResponse = (run: Run) => ({
  id: run.id,
  tenantId: run.tenantId,
  threadId: run.threadId,
  userId: run.userId,
  agentId: run.agentId,
  status: run.status,
  strategy: run.strategy,
  priority: run.priority,
  errorCode: run.errorCode,
  errorMessage: run.errorMessage,
  errorDetails: run.errorDetails === null ? null : { ...run.errorDetails },
  incomplete: run.incompleteReason === null ? null : { reason: run.incompleteReason },
  degraded: run.degraded,
  usage: { inputTokens: run.inputTokens, outputTokens: run.outputTokens },
  stepCount: run.stepCount,
  createdAt: run.createdAt.toISOString(),
  startedAt: iso(run.startedAt),
  completedAt: iso(run.completedAt),
  queueWaitMs:
    run.firstClaimedAt === null
      ? null
      : Math.max(0, run.firstClaimedAt.getTime() - run.createdAt.getTime()),
});
