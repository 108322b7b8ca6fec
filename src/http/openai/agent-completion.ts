import type { Agent } from '../../domain/agents/agent-types.ts';
import type { ThreadService } from '../../domain/agents/thread-service.ts';
import { AppError, type ErrorCode, errorCodes } from '../../domain/errors.ts';
import type { Principal } from '../../domain/identity/principal.ts';
import type { MessageV1, ModelResultV1 } from '../../plugin-api/index.ts';
import type { RouteServices } from '../app-env.ts';

/** The agent name of the agent form of a model, `agent:<name>`; undefined for other models. */
export function agentName(model: string): string | undefined {
  return model.startsWith('agent:') ? model.slice('agent:'.length) : undefined;
}

/** Finds one of the caller's tenant's agents by name; `agent_not_found` when there is none. */
export async function findAgentByName(
  services: Pick<RouteServices, 'agents'>,
  principal: Principal,
  name: string,
): Promise<Agent> {
  let after: string | undefined;
  for (;;) {
    const page = await services.agents.list(principal, { limit: 100, after });
    const agent = page.data.find((candidate) => candidate.name === name);
    if (agent !== undefined) return agent;
    if (page.nextCursor === null) break;
    after = page.nextCursor;
  }
  throw new AppError('agent_not_found', `The model 'agent:${name}' does not exist.`);
}

/** The thread and run an agent completion created, for response headers. */
export interface AgentRunIds {
  readonly threadId: string;
  readonly runId: string;
}

function toErrorCode(code: unknown): ErrorCode {
  return typeof code === 'string' && (errorCodes as readonly string[]).includes(code)
    ? (code as ErrorCode)
    : 'internal';
}

/** A failed run's `errorDetails` (a budget or quota refusal's), to answer the caller with. */
function refusalOf(type: string, data: Record<string, unknown>): Record<string, unknown> {
  const details = data['errorDetails'];
  return type === 'run-failed' && typeof details === 'object' && details !== null
    ? (details as Record<string, unknown>)
    : {};
}

/**
 * Runs a hosted agent as a chat completion: a new thread holding `history`, a run with `input` (the agent's own
 * instructions, tools and model apply), its `message-delta` events streamed to `onTextDelta`,
 * and its final text and usage once it completes. The run is billed and limited like any run.
 * An aborted `signal` cancels the run; a run that stops for a tool approval ends the completion
 * with a `conflict` naming the thread and run (decide it through the approvals API).
 */
export async function runAgentCompletion(options: {
  readonly services: Pick<RouteServices, 'threads' | 'eventHub'>;
  readonly principal: Principal;
  readonly agent: Agent;
  readonly input: string;
  /** The request's earlier messages, stored in the new thread before the input. */
  readonly history: readonly MessageV1[];
  readonly signal: AbortSignal;
  readonly onStarted: (ids: AgentRunIds) => void;
  readonly onTextDelta: (delta: string) => void;
}): Promise<ModelResultV1> {
  const { services, principal, agent } = options;
  const threads: ThreadService = services.threads;
  const thread = await threads.createThread(principal, {
    title: `chat.completions agent:${agent.name}`,
    metadata: { source: 'openai-api' },
    messages: options.history,
  });
  // The thread exists only for this run: a run refused (quota, queue full, bad input) leaves
  // no empty thread behind.
  const run = await threads
    .createRun(principal, thread.id, {
      agentId: agent.id,
      input: options.input,
      strategy: 'reject',
    })
    .catch(async (error: unknown) => {
      await threads.deleteThread(principal, thread.id).catch(() => undefined);
      throw error;
    });
  // Named by every error that ends the completion from here on (see toOpenAiError).
  const ids: AgentRunIds = { threadId: thread.id, runId: run.id };
  options.onStarted(ids);
  const subscription = services.eventHub.subscribe(
    run.id,
    principal.kind === 'user' ? principal.userId : '',
  );
  const cancel = () => {
    threads.cancelRun(principal, thread.id, run.id).catch(() => undefined);
  };
  options.signal.addEventListener('abort', cancel, { once: true });
  try {
    let after = 0;
    for (;;) {
      options.signal.throwIfAborted();
      const events = subscription.take(after) ?? (await threads.runEvents(principal, run, after));
      for (const event of events) {
        after = event.seq;
        const data = event.data as Record<string, unknown>;
        if (event.type === 'message-delta' && typeof data['text'] === 'string') {
          options.onTextDelta(data['text']);
        } else if (event.type === 'run-completed') {
          const usage = data['usage'] as { inputTokens?: number; outputTokens?: number };
          return {
            text: typeof data['text'] === 'string' ? data['text'] : '',
            toolCalls: [],
            finishReason: 'stop',
            usage: {
              inputTokens: usage.inputTokens ?? 0,
              outputTokens: usage.outputTokens ?? 0,
              estimated: false,
            },
          };
        } else if (event.type === 'approval-requested') {
          throw new AppError(
            'conflict',
            `The agent waits for approval of a tool call (thread ${thread.id}, run ${run.id}).`,
            { details: { ...ids } },
          );
        } else if (
          event.type === 'run-failed' ||
          event.type === 'run-cancelled' ||
          event.type === 'run-expired'
        ) {
          const code = event.type === 'run-failed' ? toErrorCode(data['errorCode']) : 'internal';
          // Not to be retried by the client: a repeat is a new run that would call the model
          // and the agent's tools again (their side effects included).
          throw new AppError(
            event.type === 'run-expired' ? 'request_timeout' : code,
            typeof data['message'] === 'string' && code !== 'internal'
              ? data['message']
              : `The agent run ended: ${event.type}.`,
            { details: { ...refusalOf(event.type, data), ...ids, retry: false } },
          );
        }
      }
      if (events.length === 0) await subscription.wait(1_000, options.signal);
    }
  } finally {
    options.signal.removeEventListener('abort', cancel);
    subscription.close();
  }
}
