import { randomBytes } from 'node:crypto';
import { createRoute, z } from '@hono/zod-openapi';
import { asTenantUser } from '../../domain/agents/agent-service.ts';
import { AppError } from '../../domain/errors.ts';
import type { ResponseFormat, Sampling, ToolChoice } from '../../gateway/model-gateway.ts';
import type { MessageV1, ModelResultV1 } from '../../plugin-api/index.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { ClientGoneError } from '../client-gone.ts';
import { agentName, findAgentByName, runAgentCompletion } from '../openai/agent-completion.ts';
import { streamChatCompletion } from '../openai/chat-completion-stream.ts';
import {
  textOf,
  toFinishReason,
  toGatewayMessages,
  toGatewayTools,
  toToolCalls,
  toUsage,
} from '../openai/chat-messages.ts';
import { assertMayCall } from '../openai/model-access.ts';
import { invalidRequest } from '../openai/openai-error.ts';
import { openAiErrors } from '../openai/openai-error-responses.ts';
import {
  type ChatCompletionRequest,
  chatCompletionRequestSchema,
  chatCompletionSchema,
} from '../openai/openai-schemas.ts';

/** Output tokens a completion may produce when the request names no limit. */
const defaultMaxOutputTokens = 4_096;
/** How long a budget reservation of an API call is held before it counts as orphaned. */
const callDeadlineMs = 10 * 60_000;

const createChatCompletion = createRoute({
  method: 'post',
  path: '/v1/chat/completions',
  operationId: 'createChatCompletion',
  tags: ['OpenAI-compatible'],
  summary: 'OpenAI-compatible chat completion (streaming or not) with a model or a hosted agent',
  security: [{ bearerAuth: [] }],
  request: {
    body: {
      required: true,
      content: { 'application/json': { schema: chatCompletionRequestSchema } },
    },
  },
  responses: {
    200: {
      description:
        'A `chat.completion`, or with `stream: true` server-sent `chat.completion.chunk` events ending in `data: [DONE]`.',
      content: {
        'application/json': { schema: chatCompletionSchema },
        'text/event-stream': { schema: z.string() },
      },
    },
    ...openAiErrors,
  },
});

/** The gateway's response format for the request's `response_format`. */
function responseFormatOf(body: ChatCompletionRequest): ResponseFormat | undefined {
  const format = body.response_format;
  if (format === undefined || format.type === 'text') return undefined;
  if (format.type === 'json_object') return { type: 'json' };
  const { name, description, schema, strict } = format.json_schema;
  return {
    type: 'json',
    name,
    strict: strict === true,
    ...(description === undefined ? {} : { description }),
    ...(schema === undefined ? {} : { schema }),
  };
}

/** The request's cache directive: `Cache-Control: no-cache` or `x-brigade-cache: bypass`. */
function bypassesCache(header: (name: string) => string | undefined): boolean {
  const control = header('cache-control')?.toLowerCase() ?? '';
  return (
    /(^|,)\s*(no-cache|no-store)\s*(,|$)/.test(control) ||
    header('x-brigade-cache')?.trim().toLowerCase() === 'bypass'
  );
}

/** Refuses request fields the gateway cannot honour, naming the field. */
function checkSupported(body: ChatCompletionRequest): void {
  if (body.n !== undefined && body.n !== null && body.n !== 1)
    throw invalidRequest('n', 'Only n = 1 is supported.');
}

/** The request's sampling settings (those given), for the provider. */
function samplingOf(body: ChatCompletionRequest): Sampling | undefined {
  const sampling: Sampling = {
    ...(body.temperature == null ? {} : { temperature: body.temperature }),
    ...(body.top_p == null ? {} : { topP: body.top_p }),
    ...(body.stop == null ? {} : { stop: typeof body.stop === 'string' ? [body.stop] : body.stop }),
    ...(body.seed == null ? {} : { seed: body.seed }),
    ...(body.presence_penalty == null ? {} : { presencePenalty: body.presence_penalty }),
    ...(body.frequency_penalty == null ? {} : { frequencyPenalty: body.frequency_penalty }),
  };
  return Object.keys(sampling).length === 0 ? undefined : sampling;
}

/** The request's `tool_choice` for the gateway: a named function must be one of its tools. */
function toolChoiceOf(body: ChatCompletionRequest): ToolChoice | undefined {
  const choice = body.tool_choice;
  if (choice === undefined || choice === 'auto' || choice === 'none') return undefined;
  const offered = (body.tools ?? []).map((tool) => tool.function.name);
  if (offered.length === 0)
    throw invalidRequest(
      'tool_choice',
      'tool_choice requires tools: send the tools to choose from.',
    );
  if (choice === 'required') return 'required';
  if (!offered.includes(choice.function.name))
    throw invalidRequest(
      'tool_choice',
      `tool_choice names '${choice.function.name}', which is not one of the request's tools.`,
    );
  return { toolName: choice.function.name };
}

/**
 * The earlier messages of an `agent:<name>` request as the new thread's conversation: system,
 * developer, user and assistant text (the client's system text is the user's own words, so it
 * is labelled as theirs). Tool calls and results are refused: the agent calls its own tools.
 */
function agentHistory(messages: readonly MessageV1[]): MessageV1[] {
  const converted = messages.map((message, index) => {
    if (message.role === 'tool' || message.content.some((part) => part.type !== 'text'))
      throw invalidRequest(
        `messages[${index}]`,
        'With agent:<name> earlier messages may be system, developer, user or assistant text; the agent makes its own tool calls.',
      );
    return message.role === 'system' ? { ...message, provenance: 'user' as const } : message;
  });
  return converted.filter((message) => message.content.length > 0);
}

/** Registers `createChatCompletion` (the models' operations are in openai-model-routes.ts). */
export function registerOpenAiRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createChatCompletion, async (context) => {
    const body = context.req.valid('json');
    const principal = context.get('principal');
    const user = asTenantUser(principal);
    const name = agentName(body.model);
    assertMayCall(user, name !== undefined);
    checkSupported(body);
    const messages = toGatewayMessages(body.messages);
    const tools = toGatewayTools(body);
    const maxOutputTokens = body.max_completion_tokens ?? body.max_tokens ?? defaultMaxOutputTokens;
    const controller = new AbortController();
    const clientSignal = context.req.raw.signal;
    const onClientGone = () => controller.abort(new ClientGoneError());
    clientSignal.addEventListener('abort', onClientGone, { once: true });
    const headers: Record<string, string> = {};
    let start: (onTextDelta: (delta: string) => void) => Promise<ModelResultV1>;
    if (name !== undefined) {
      const agent = await findAgentByName(services, principal, name);
      if (tools.length > 0)
        throw invalidRequest(
          'tools',
          'An agent brings its own tools; send none with agent:<name>.',
        );
      const last = body.messages.at(-1);
      if (last?.role !== 'user')
        throw invalidRequest(
          'messages',
          'With agent:<name> the last message must be the user’s input.',
        );
      if (body.tool_choice === 'required' || typeof body.tool_choice === 'object')
        throw invalidRequest(
          'tool_choice',
          'An agent decides which of its tools to call; send tool_choice auto or none with agent:<name>.',
        );
      if (body.response_format !== undefined && body.response_format.type !== 'text')
        throw invalidRequest(
          'response_format',
          'An agent answers in text; response_format is only supported for models.',
        );
      const input = textOf(last.content);
      if (input.length === 0 || input.length > 200_000)
        throw invalidRequest(
          'messages',
          'With agent:<name> the last message is the run’s input: 1 to 200,000 characters.',
        );
      const history = agentHistory(messages.slice(0, -1));
      start = (onTextDelta) =>
        runAgentCompletion({
          services,
          principal,
          agent,
          input,
          history,
          signal: controller.signal,
          onStarted: (ids) => {
            headers['x-brigade-thread-id'] = ids.threadId;
            headers['x-brigade-run-id'] = ids.runId;
          },
          onTextDelta,
        });
    } else {
      if (!(await services.chat.knows(body.model, user.tenantId)))
        throw new AppError('unknown_model', `The model '${body.model}' does not exist.`);
      const responseFormat = responseFormatOf(body);
      const sampling = samplingOf(body);
      const toolChoice = toolChoiceOf(body);
      const stream = body.stream === true;
      const bypass = bypassesCache((name) => context.req.header(name));
      start = (onTextDelta) =>
        services.chat.gateway.generate({
          model: body.model,
          messages,
          tools,
          maxOutputTokens,
          // Brigade's default, not the client's: fitted to a small model's context.
          fitOutputToContext:
            body.max_completion_tokens === undefined && body.max_tokens === undefined,
          signal: controller.signal,
          onTextDelta,
          // A non-streaming answer needs no deltas: the provider is called without streaming.
          stream,
          responseFormat,
          sampling,
          toolChoice,
          ...(bypass ? { cache: 'bypass' as const } : {}),
          onCacheOutcome: (outcome) => {
            headers['x-brigade-cache'] = outcome;
          },
          spender: {
            tenantId: user.tenantId,
            userId: user.userId,
            keyId: user.keyId ?? null,
            role: user.role,
          },
          source: 'api',
          deadline: new Date(Date.now() + callDeadlineMs),
        });
    }
    const identity = {
      id: `chatcmpl-${randomBytes(12).toString('base64url')}`,
      created: Math.floor(Date.now() / 1000),
      model: body.model,
    };
    if (body.stream === true) {
      return (await streamChatCompletion({
        identity,
        includeUsage: body.stream_options?.include_usage === true,
        start,
        abort: onClientGone,
        headers,
      })) as never;
    }
    try {
      const result = await start(() => undefined);
      const toolCalls = toToolCalls(result);
      return context.json(
        {
          ...identity,
          object: 'chat.completion' as const,
          choices: [
            {
              index: 0,
              message: {
                role: 'assistant' as const,
                content: result.text === '' && toolCalls.length > 0 ? null : result.text,
                refusal: null,
                ...(toolCalls.length === 0 ? {} : { tool_calls: toolCalls }),
              },
              finish_reason: toFinishReason(result.finishReason),
              logprobs: null,
            },
          ],
          usage: toUsage(result.usage),
        },
        200,
        headers,
      );
    } finally {
      clientSignal.removeEventListener('abort', onClientGone);
    }
  });
}
