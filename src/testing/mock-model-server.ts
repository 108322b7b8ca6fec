import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  completionBody,
  completionChunks,
  toWireCompletion,
} from './internal/chat-completion-wire.ts';
import { headerValue, isRecord, parseJson, toChatRequest } from './internal/chat-request.ts';
import { countPromptWords, defaultMockReply } from './internal/default-mock-reply.ts';
import {
  delay,
  describeAuthorization,
  readBody,
  recordableHeaders,
  sendJson,
  waitForFlush,
  writeData,
} from './internal/http-io.ts';
import {
  createSeededRandom,
  faultHeader,
  openAiError,
  parseFaultHeader,
  resolveFaults,
  toFaultList,
} from './internal/mock-faults.ts';
import type {
  MockCallOutcome,
  MockChatRequest,
  MockFault,
  MockFaultEffects,
  MockModelCall,
  MockModelServer,
  MockModelServerOptions,
  MockReply,
  MockScript,
} from './internal/mock-model-types.ts';

const defaultMaxBodyBytes = 10 * 1024 * 1024;

/** What an error response says beyond its status; a fault adds its retry headers. */
interface ErrorDetail {
  readonly message?: string | undefined;
  readonly code?: string | null | undefined;
  readonly fault?: MockFaultEffects | undefined;
}

/** One request in flight: its record, its response and a signal that fires when it closes. */
interface Exchange {
  readonly call: MockModelCall;
  readonly request: IncomingMessage;
  readonly response: ServerResponse;
  readonly signal: AbortSignal;
  readonly requestId: string;
}

/**
 * Starts a real HTTP server on 127.0.0.1 that speaks the OpenAI Chat Completions protocol
 * (`POST /v1/chat/completions`, streaming or not, and `GET /v1/models`) well enough for the
 * official `openai` client and the AI SDK's OpenAI providers. Replies come from a script, faults
 * (latency, error statuses, hangs, resets, broken or slow streams) can be injected per request,
 * and every request is recorded in `calls`. Paths without the `/v1` prefix work too.
 *
 * Nothing is shared between servers: each holds its own script, faults, PRNG and records.
 */
export async function createMockModelServer(
  options: MockModelServerOptions = {},
): Promise<MockModelServer> {
  const clock = options.clock ?? Date.now;
  const maxBodyBytes = options.maxBodyBytes ?? defaultMaxBodyBytes;
  const models = options.models ?? ['mock-model'];
  const calls: MockModelCall[] = [];
  let script: MockScript | undefined;
  let faults: readonly MockFault[] = [];
  let random: () => number = () => 0;
  let queueIndex = 0;
  let chatCount = 0;
  let serial = 0;
  let toolCallCount = 0;
  let requestCount = 0;
  let closing = false;
  /** Responses not yet closed, so `close()` can wait until every call has its outcome. */
  const openResponses = new Set<Promise<void>>();

  const reset = (): void => {
    script = options.script;
    faults = toFaultList(options.faults);
    random = options.random ?? createSeededRandom(options.seed ?? 1);
    queueIndex = 0;
    chatCount = 0;
    serial = 0;
    toolCallCount = 0;
    requestCount = 0;
    calls.length = 0;
  };
  reset();

  const settle = (call: MockModelCall, outcome: MockCallOutcome): void => {
    if (call.outcome !== 'pending') return;
    call.outcome = outcome;
    call.finishedAt = clock();
  };

  const sendError = (exchange: Exchange, status: number, detail: ErrorDetail = {}): void => {
    const headers: Record<string, string> = { 'x-request-id': exchange.requestId };
    const { fault } = detail;
    if (fault?.retryAfterSeconds !== undefined) {
      headers['retry-after'] = String(fault.retryAfterSeconds);
    }
    if (fault?.retryAfterMs !== undefined) headers['retry-after-ms'] = String(fault.retryAfterMs);
    const message = detail.message ?? fault?.errorMessage;
    const body = openAiError(status, { message, code: detail.code });
    sendJson(exchange.response, { status, body, headers });
  };

  /** Applies the faults that pre-empt a reply; true when the exchange needs nothing more. */
  const applyBlockingFaults = async (exchange: Exchange, fault: MockFaultEffects) => {
    if (fault.latencyMs !== undefined && !(await delay(fault.latencyMs, exchange.signal))) {
      return true;
    }
    if (fault.hang === true) return true;
    if (fault.reset === true) {
      settle(exchange.call, 'socket-reset');
      exchange.request.socket.destroy();
      return true;
    }
    if (fault.status !== undefined) {
      sendError(exchange, fault.status, { fault });
      return true;
    }
    return false;
  };

  const nextReply = async (request: MockChatRequest): Promise<MockReply | undefined> => {
    const current = script;
    if (current === undefined) return defaultMockReply(request);
    if (typeof current === 'function') return await current(request);
    const reply = current[queueIndex];
    if (reply !== undefined) queueIndex += 1;
    return reply;
  };

  /** Lazily yields the SSE events of a stream: chunks, the optional malformed line, `[DONE]`. */
  function* sseEvents(chunks: Iterable<unknown>, fault: MockFaultEffects) {
    let first = true;
    for (const chunk of chunks) {
      yield `data: ${JSON.stringify(chunk)}\n\n`;
      if (first && fault.malformedChunk === true)
        yield 'data: {"id": "chatcmpl-mock", "choices": [\n\n';
      first = false;
    }
    yield 'data: [DONE]\n\n';
  }

  const streamReply = async (
    exchange: Exchange,
    chunks: Iterable<unknown>,
    fault: MockFaultEffects,
  ) => {
    const { response, call } = exchange;
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-request-id': exchange.requestId,
    });
    response.flushHeaders();
    call.status = 200;
    for (const event of sseEvents(chunks, fault)) {
      if (fault.resetAfterChunks !== undefined && call.eventsWritten >= fault.resetAfterChunks) {
        await waitForFlush(response);
        settle(call, 'socket-reset');
        exchange.request.socket.destroy();
        return;
      }
      if (call.eventsWritten > 0 && fault.tokenDelayMs !== undefined) {
        if (!(await delay(fault.tokenDelayMs, exchange.signal))) return;
      }
      if (!(await writeData(response, event))) return;
      call.eventsWritten += 1;
    }
    response.end();
  };

  const handleChat = async (exchange: Exchange): Promise<void> => {
    const headerFaults = parseFaultHeader(headerValue(exchange.request, faultHeader));
    if (headerFaults instanceof Error) {
      sendError(exchange, 400, { message: headerFaults.message });
      return;
    }
    const chatRequest = toChatRequest(exchange.call, chatCount);
    if (typeof chatRequest === 'string') {
      sendError(exchange, 400, { message: chatRequest });
      return;
    }
    chatCount += 1;
    let fault = resolveFaults([...faults, ...headerFaults], random);
    exchange.call.fault = fault;
    if (fault !== undefined && (await applyBlockingFaults(exchange, fault))) return;

    let reply: MockReply | undefined;
    try {
      reply = await nextReply(chatRequest);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      sendError(exchange, 500, {
        message: `mock script threw: ${message}`,
        code: 'mock_script_error',
      });
      return;
    }
    if (reply === undefined) {
      sendError(exchange, 400, {
        message: 'The mock script queue is exhausted.',
        code: 'mock_script_exhausted',
      });
      return;
    }
    exchange.call.reply = reply;
    const replyFault = resolveFaults(toFaultList(reply.fault), random);
    if (replyFault !== undefined) {
      fault = { ...fault, ...replyFault };
      exchange.call.fault = fault;
      if (await applyBlockingFaults(exchange, replyFault)) return;
    }

    serial += 1;
    const completion = toWireCompletion({
      reply,
      id: `chatcmpl-mock-${serial}`,
      model: chatRequest.model,
      created: Math.floor(clock() / 1000),
      promptWords: countPromptWords(chatRequest.messages),
      nextToolCallId: () => {
        toolCallCount += 1;
        return `call_mock_${toolCallCount}`;
      },
    });
    const omitUsage = fault?.omitUsage === true;
    if (!chatRequest.stream) {
      const body = completionBody(completion);
      const { usage: _left, ...withoutUsage } = body;
      sendJson(exchange.response, {
        status: 200,
        body: omitUsage ? withoutUsage : body,
        headers: { 'x-request-id': exchange.requestId },
      });
      return;
    }
    const includeUsage =
      !omitUsage &&
      isRecord(chatRequest.body['stream_options']) &&
      chatRequest.body['stream_options']['include_usage'] === true;
    await streamReply(exchange, completionChunks(completion, includeUsage), fault ?? {});
  };

  const route = async (exchange: Exchange): Promise<void> => {
    const { call } = exchange;
    if (options.apiKey !== undefined) {
      const given = headerValue(exchange.request, 'authorization');
      if (given !== `Bearer ${options.apiKey}`) {
        const message =
          given === undefined
            ? "You didn't provide an API key. Provide it in the Authorization header (Bearer auth)."
            : 'Incorrect API key provided.';
        sendError(exchange, 401, { message, code: given === undefined ? null : 'invalid_api_key' });
        return;
      }
    }
    const path = call.path.replace(/^\/v1(?=\/)/, '');
    if (call.method === 'GET' && path === '/models') {
      const data = models.map((id) => ({ id, object: 'model', created: 0, owned_by: 'mock' }));
      sendJson(exchange.response, { status: 200, body: { object: 'list', data } });
      return;
    }
    if (call.method === 'POST' && path === '/chat/completions') {
      if (call.body === undefined) {
        sendError(exchange, 400, { message: 'The request body is not valid JSON.' });
        return;
      }
      await handleChat(exchange);
      return;
    }
    sendError(exchange, 404, { message: `Invalid URL (${call.method} ${call.path})` });
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const startedAt = clock();
    requestCount += 1;
    const requestId = `req_mock_${requestCount}`;
    const body = await readBody(request, maxBodyBytes);
    const call: MockModelCall = {
      method: request.method ?? 'GET',
      path: new URL(request.url ?? '/', 'http://mock.invalid').pathname,
      headers: recordableHeaders(request.headers),
      authorization: describeAuthorization(headerValue(request, 'authorization')),
      body: body.tooLarge ? undefined : parseJson(body.text),
      startedAt,
      finishedAt: undefined,
      outcome: 'pending',
      status: undefined,
      fault: undefined,
      reply: undefined,
      eventsWritten: 0,
    };
    calls.push(call);
    const closed = new AbortController();
    response.on('finish', () => {
      call.status = response.statusCode;
      settle(call, response.statusCode < 400 ? 'completed' : 'http-error');
    });
    const responseClosed = new Promise<void>((resolve) => {
      response.on('close', () => {
        closed.abort();
        settle(call, closing ? 'server-closed' : 'client-aborted');
        resolve();
      });
    });
    openResponses.add(responseClosed);
    responseClosed.finally(() => openResponses.delete(responseClosed)).catch(() => undefined);
    const exchange: Exchange = { call, request, response, signal: closed.signal, requestId };
    if (body.tooLarge) {
      sendError(exchange, 413, { message: `The request body exceeds ${maxBodyBytes} bytes.` });
      return;
    }
    await route(exchange);
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) {
        const message = error instanceof Error ? error.message : String(error);
        sendJson(response, { status: 500, body: openAiError(500, { message }) });
      } else {
        response.destroy();
      }
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/v1`,
    port,
    calls,
    setScript: (next) => {
      script = next;
      queueIndex = 0;
    },
    setFaults: (next) => {
      faults = toFaultList(next);
    },
    reset,
    close: async () => {
      closing = true;
      await new Promise<void>((resolve, reject) => {
        server.close((error) => (error === undefined ? resolve() : reject(error)));
        server.closeAllConnections();
      });
      await Promise.all(openResponses);
    },
  };
}
