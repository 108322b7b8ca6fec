import { z } from '@hono/zod-openapi';
import type { RunStep } from '../../domain/agents/agent-types.ts';
import type { ModelResultV1, ToolOutcomeV1 } from '../../plugin-api/index.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonResponse } from '../route-helpers.ts';

const runParams = z.object({ threadId: idParam('threadId'), runId: idParam('runId') });

const toolCallSchema = z.object({ id: z.string(), name: z.string(), input: z.unknown() });

const runStepSchema = z
  .object({
    key: z.string().openapi({ description: '`model:<n>` or `tool:<call id>`.' }),
    type: z.enum(['model', 'tool']),
    createdAt: z.iso.datetime(),
    model: z
      .object({
        finishReason: z.string(),
        usage: z.object({ inputTokens: z.int(), outputTokens: z.int(), estimated: z.boolean() }),
        toolCalls: z.array(toolCallSchema),
      })
      .optional()
      .openapi({
        description:
          'A model call: why it stopped, its tokens and the tools it called. Its text is in the run’s events and the thread’s messages, where the output guard applies. A call the run’s end (its deadline, a cancel, a failure) cut off after its output started shows `other`, with the tokens it was charged (`estimated`), as the usage ledger has them.',
      }),
    tool: z
      .object({
        callId: z.string(),
        name: z.string().nullable(),
        input: z.unknown(),
        status: z.enum(['ok', 'error']),
        output: z.unknown().optional(),
        error: z.object({ message: z.string(), code: z.string().nullable() }).optional(),
        approval: z
          .object({
            id: z.uuid(),
            status: z.enum(['pending', 'approved', 'rejected', 'expired']),
            editedInput: z.unknown().optional().openapi({
              description:
                'Set when the user edited the arguments: what the tool ran with (`input` stays what the model asked for).',
            }),
          })
          .optional()
          .openapi({ description: 'The approval the call waited for, when it needed one.' }),
      })
      .optional()
      .openapi({
        description:
          'A tool call: what the model asked for and what came back (as the model saw it: capped, secrets redacted), or why it failed or was refused.',
      }),
  })
  .openapi('RunStep');

const listRunSteps = authedRoute({
  method: 'get',
  path: '/v1/threads/{threadId}/runs/{runId}/steps',
  operationId: 'listRunSteps',
  tags: ['Runs'],
  summary: 'List the completed steps of your run (model calls and tool calls), in order',
  request: { params: runParams },
  responses: {
    200: jsonResponse(z.object({ data: z.array(runStepSchema) }), 'The steps, oldest first.'),
  },
});

/** The API form of a run's steps: tool steps name the call their model step made. */
function renderSteps(steps: readonly RunStep[]) {
  const calls = new Map<string, { name: string; input: unknown }>();
  for (const step of steps) {
    if (step.type !== 'model') continue;
    for (const call of (step.output as Partial<ModelResultV1>).toolCalls ?? [])
      calls.set(call.toolCallId, { name: call.toolName, input: call.input });
  }
  return steps.map((step) => {
    const base = { key: step.key, type: step.type, createdAt: step.createdAt.toISOString() };
    if (step.type === 'model') {
      const result = step.output as Partial<ModelResultV1>;
      return {
        ...base,
        model: {
          finishReason: String(result.finishReason ?? 'unknown'),
          usage: {
            inputTokens: result.usage?.inputTokens ?? 0,
            outputTokens: result.usage?.outputTokens ?? 0,
            estimated: result.usage?.estimated ?? false,
          },
          toolCalls: (result.toolCalls ?? []).map((call) => ({
            id: call.toolCallId,
            name: call.toolName,
            input: call.input,
          })),
        },
      };
    }
    const callId = step.key.slice('tool:'.length);
    const outcome = step.output as ToolOutcomeV1;
    const call = calls.get(callId);
    return {
      ...base,
      tool: {
        callId,
        name: call?.name ?? null,
        input: call?.input ?? null,
        status: outcome.status,
        ...(outcome.status === 'ok'
          ? { output: outcome.output }
          : { error: { message: outcome.message, code: outcome.code ?? null } }),
        ...(step.approval === undefined ? {} : { approval: step.approval }),
      },
    };
  });
}

/** Registers `listRunSteps`. */
export function registerRunStepRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(listRunSteps, async (context) => {
    const { threadId, runId } = context.req.valid('param');
    const steps = await services.threads.listRunSteps(context.get('principal'), threadId, runId);
    return context.json({ data: renderSteps(steps) }, 200);
  });
}
