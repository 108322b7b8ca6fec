import { z } from '@hono/zod-openapi';

/**
 * Request and response schemas of the OpenAI-compatible API (Chat Completions and Models).
 * Objects are not strict: OpenAI clients send fields Brigade does not use (`seed`, `logprobs`,
 * `metadata`…); those are dropped, while fields that would change the answer and cannot be
 * honoured are declared here and refused by the route with a 400 naming them.
 */

const textPartSchema = z.object({ type: z.literal('text'), text: z.string() });

/** A message's content: a string, or an array of text parts. */
const contentSchema = z.union([z.string(), z.array(textPartSchema)]);

const toolCallSchema = z.object({
  id: z.string().min(1).max(200),
  type: z.literal('function'),
  function: z.object({
    name: z.string().min(1).max(200),
    arguments: z.string().openapi({ description: 'The arguments as a JSON string.' }),
  }),
});

const messageSchema = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content: contentSchema, name: z.string().optional() }),
  z.object({ role: z.literal('developer'), content: contentSchema, name: z.string().optional() }),
  z.object({ role: z.literal('user'), content: contentSchema, name: z.string().optional() }),
  z.object({
    role: z.literal('assistant'),
    content: contentSchema.nullable().optional(),
    tool_calls: z.array(toolCallSchema).optional(),
    refusal: z.string().nullable().optional(),
    name: z.string().optional(),
  }),
  z.object({ role: z.literal('tool'), content: contentSchema, tool_call_id: z.string().min(1) }),
]);

/** One message of a chat completion request. */
export type ChatMessage = z.infer<typeof messageSchema>;

const toolSchema = z.object({
  type: z.literal('function'),
  function: z.object({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'letters, digits, _ and -, up to 64'),
    description: z.string().max(10_000).optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullable().optional(),
  }),
});

const responseFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: z.string(),
      description: z.string().optional(),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullable().optional(),
    }),
  }),
]);

/** The body of `POST /v1/chat/completions`. */
export const chatCompletionRequestSchema = z
  .object({
    model: z.string().min(1).max(300).openapi({
      description:
        '`local`, `<provider>:<model>` for a configured provider, or `agent:<name>` to run one of your tenant’s agents.',
    }),
    messages: z.array(messageSchema).min(1).max(1_000),
    tools: z.array(toolSchema).max(128).optional(),
    tool_choice: z
      .union([
        z.enum(['auto', 'none', 'required']),
        z.object({ type: z.literal('function'), function: z.object({ name: z.string() }) }),
      ])
      .optional()
      .openapi({
        description:
          '`auto` (default), `none` (no tools offered), `required` (the model must call one), or a named function it must call. Not with `agent:<name>`.',
      }),
    max_tokens: z.int().min(1).max(1_000_000).nullable().optional(),
    max_completion_tokens: z.int().min(1).max(1_000_000).nullable().optional(),
    temperature: z.number().min(0).max(2).nullable().optional(),
    top_p: z.number().min(0).max(1).nullable().optional(),
    stop: z
      .union([z.string().min(1).max(200), z.array(z.string().min(1).max(200)).max(4)])
      .nullable()
      .optional()
      .openapi({ description: 'Up to four sequences; the answer ends before the first.' }),
    seed: z
      .int()
      .min(-(2 ** 53) + 1)
      .max(2 ** 53 - 1)
      .nullable()
      .optional(),
    presence_penalty: z.number().min(-2).max(2).nullable().optional(),
    frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
    n: z.int().min(1).max(128).nullable().optional().openapi({ description: 'Only 1.' }),
    stream: z.boolean().nullable().optional(),
    stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
    response_format: responseFormatSchema.optional().openapi({
      description:
        '`text`, `json_object` or `json_schema` (passed to the provider; the local model answers a JSON object). Not with `agent:<name>`.',
    }),
    user: z.string().max(1_000).optional().openapi({ description: 'Accepted and ignored.' }),
  })
  .openapi('ChatCompletionRequest');

/** A parsed chat completion request. */
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

const usageSchema = z.object({
  prompt_tokens: z.int(),
  completion_tokens: z.int(),
  total_tokens: z.int(),
  prompt_tokens_details: z.object({ cached_tokens: z.int() }).optional().openapi({
    description: 'Present when the provider served part of the prompt from its cache.',
  }),
});

/** The non-streaming answer of `POST /v1/chat/completions`. */
export const chatCompletionSchema = z
  .object({
    id: z.string(),
    object: z.literal('chat.completion'),
    created: z.int(),
    model: z.string(),
    choices: z.array(
      z.object({
        index: z.int(),
        message: z.object({
          role: z.literal('assistant'),
          content: z.string().nullable(),
          refusal: z.null(),
          tool_calls: z.array(toolCallSchema).optional(),
        }),
        finish_reason: z.enum(['stop', 'length', 'tool_calls', 'content_filter']),
        logprobs: z.null(),
      }),
    ),
    usage: usageSchema,
  })
  .openapi('ChatCompletion');

/** One model a key may name: an entry of `GET /v1/models`, and `GET /v1/models/{model}`. */
export const modelSchema = z
  .object({
    id: z.string(),
    object: z.literal('model'),
    created: z.int().openapi({ description: 'Unix seconds.' }),
    owned_by: z.string().openapi({
      description:
        '`brigade` (`local`), `tenant` (an agent or a tenant route) or `platform` (a platform route or a provider model).',
    }),
  })
  .openapi('Model');

/** The answer of `GET /v1/models`. */
export const modelListSchema = z
  .object({ object: z.literal('list'), data: z.array(modelSchema) })
  .openapi('ModelList');

/** An OpenAI-shaped error document. */
export const openAiErrorSchema = z
  .object({
    error: z.object({
      message: z.string(),
      type: z.string(),
      param: z.string().nullable(),
      code: z.string().nullable(),
      policyId: z.uuid().optional().openapi({
        description: 'Budget and quota refusals: the policy that refused the call.',
      }),
      level: z.string().optional().openapi({ description: 'Refusals: that policy’s level.' }),
      period: z.string().optional().openapi({ description: 'Budget refusals: its period.' }),
      limitUsd: z.number().optional().openapi({ description: 'Budget refusals: its amount.' }),
      remainingUsd: z
        .number()
        .optional()
        .openapi({ description: 'Budget refusals: what was left of it.' }),
      requiredUsd: z.number().optional().openapi({
        description: 'Budget refusals: the refused call’s priced worst case.',
      }),
      limit: z.int().optional().openapi({ description: 'Quota refusals: the daily quota.' }),
      used: z.int().optional().openapi({ description: 'Quota refusals: what was used of it.' }),
      resetsAt: z.iso.datetime().nullable().optional().openapi({
        description: 'Budget and quota refusals: when the period resets.',
      }),
    }),
  })
  .openapi('OpenAIError');
