import { request as httpRequest, type IncomingMessage } from 'node:http';
import {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIUserAbortError,
  InternalServerError,
  RateLimitError,
} from 'openai';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { MockModelServer } from './index.ts';
import { createMockModelServer, parseMockFaults } from './index.ts';
import { clientFor, collect, hello, postChat, withServer } from './internal/openai-test-kit.ts';

let server: MockModelServer;

beforeAll(async () => {
  server = await createMockModelServer();
});

afterAll(async () => {
  await server.close();
});

beforeEach(() => {
  server.reset();
});

describe('createMockModelServer fault injection', () => {
  it('surfaces a 429 with its Retry-After header and OpenAI error code', async () => {
    server.setFaults({ status: 429, retryAfterSeconds: 7 });
    const error = await clientFor(server)
      .chat.completions.create(hello)
      .catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(RateLimitError);
    const rateLimited = error as RateLimitError;
    expect(rateLimited.status).toBe(429);
    expect(rateLimited.headers.get('retry-after')).toBe('7');
    expect(rateLimited.code).toBe('rate_limit_exceeded');
    expect(rateLimited.requestID).toMatch(/^req_mock_/);
    expect(server.calls[0]).toMatchObject({ outcome: 'http-error', status: 429 });
  });

  it('fails one request with a 500 asked for in the x-mock-fault header', async () => {
    const client = clientFor(server);
    const error = await client.chat.completions
      .create(hello, { headers: { 'x-mock-fault': JSON.stringify({ status: 500 }) } })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InternalServerError);
    expect((error as InternalServerError).type).toBe('server_error');

    const next = await client.chat.completions.create(hello);
    expect(next.choices[0]?.message.content).toBe('echo: hello there');
  });

  it('answers 400 naming the field for an x-mock-fault it cannot apply', async () => {
    for (const [fault, message] of [
      ['5', /must be an object/],
      ['{"status":"503"}', /status: .*expected number/],
      ['{"latncyMs":200}', /Unrecognized key: "latncyMs"/],
      ['{"failRate":2,"fault":{"status":503}}', /failRate: /],
    ] as const) {
      const response = await postChat(
        server,
        { model: 'm', messages: [] },
        { 'x-mock-fault': fault },
      );
      expect(response.status, fault).toBe(400);
      const body = (await response.json()) as { error: { message: string } };
      expect(body.error.message, fault).toMatch(message);
    }
  });

  it('parses the faults the CLI takes, one or a list', () => {
    expect(parseMockFaults('{"failRate":0.5,"fault":{"status":503}}')).toEqual([
      { failRate: 0.5, fault: { status: 503 } },
    ]);
    expect(parseMockFaults('[{"latencyMs":5},{"reset":true}]')).toEqual([
      { latencyMs: 5 },
      { reset: true },
    ]);
    expect(String(parseMockFaults('[{"status":503},{"status":200}]'))).toMatch(/\[1\]\.status: /);
    expect(String(parseMockFaults('{'))).toMatch(/must be JSON/);
  });

  it('lets a client with retries recover from a scripted 503', async () => {
    server.setScript([{ fault: { status: 503, retryAfterMs: 1 } }, { text: 'recovered' }]);
    const client = clientFor(server, { maxRetries: 2 });
    const completion = await client.chat.completions.create(hello);

    expect(completion.choices[0]?.message.content).toBe('recovered');
    expect(server.calls.map((call) => call.status)).toEqual([503, 200]);
  });

  it('reports a connection error when the socket is reset', async () => {
    server.setFaults({ reset: true });
    await expect(clientFor(server).chat.completions.create(hello)).rejects.toBeInstanceOf(
      APIConnectionError,
    );
    expect(server.calls[0]?.outcome).toBe('socket-reset');
  });

  it('breaks the stream when the socket is reset after some chunks', async () => {
    server.setFaults({ resetAfterChunks: 3 });
    const stream = await clientFor(server).chat.completions.create({
      ...hello,
      stream: true,
    });
    const received: ChatCompletionChunk[] = [];
    const iterate = async () => {
      for await (const chunk of stream) received.push(chunk);
    };

    await expect(iterate()).rejects.toThrow();
    expect(received).toHaveLength(3);
    expect(server.calls[0]).toMatchObject({ outcome: 'socket-reset', eventsWritten: 3 });
  });

  it('hangs until the client times out, then records the abort', async () => {
    server.setFaults({ hang: true });
    await expect(
      clientFor(server, { timeout: 200 }).chat.completions.create(hello),
    ).rejects.toBeInstanceOf(APIConnectionTimeoutError);
    await vi.waitFor(() => expect(server.calls[0]?.outcome).toBe('client-aborted'));
  });

  it('hangs until the caller aborts', async () => {
    server.setFaults({ hang: true });
    const controller = new AbortController();
    const pending = clientFor(server).chat.completions.create(hello, { signal: controller.signal });
    await vi.waitFor(() => expect(server.calls).toHaveLength(1));
    controller.abort();

    await expect(pending).rejects.toBeInstanceOf(APIUserAbortError);
    await vi.waitFor(() => expect(server.calls[0]?.outcome).toBe('client-aborted'));
  });

  it('makes the client fail on a malformed stream chunk', async () => {
    server.setFaults({ malformedChunk: true });
    const stream = await clientFor(server).chat.completions.create({ ...hello, stream: true });
    await expect(collect(stream)).rejects.toBeInstanceOf(SyntaxError);
  });

  it('leaves usage out of an answer and a stream when asked', async () => {
    server.setFaults({ omitUsage: true });
    const client = clientFor(server);
    const answer = await client.chat.completions.create(hello);
    expect(answer.choices[0]?.message.content).toBe('echo: hello there');
    expect(answer.usage).toBeUndefined();
    const stream = await client.chat.completions.create({
      ...hello,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.every((chunk) => chunk.usage == null)).toBe(true);
  });

  it('delays the first byte and every chunk when asked', async () => {
    server.setFaults({ latencyMs: 60, tokenDelayMs: 25 });
    const started = performance.now();
    const stream = await clientFor(server).chat.completions.create({
      model: 'mock-model',
      messages: [{ role: 'user', content: 'a b' }],
      stream: true,
    });
    await collect(stream);
    // Events: role, 3 words, finish, [DONE] → 5 gaps after a 60 ms wait.
    expect(performance.now() - started).toBeGreaterThanOrEqual(60 + 5 * 25 - 10);
  });

  it('injects probabilistic faults in the same pattern for the same seed', async () => {
    const faults = { failRate: 0.5, fault: { status: 503 } };
    const statuses = async (target: MockModelServer) => {
      const seen: number[] = [];
      for (let index = 0; index < 24; index += 1) {
        const response = await postChat(target, hello);
        await response.arrayBuffer();
        seen.push(response.status);
      }
      return seen;
    };
    const patterns: number[][] = [];
    for (const seed of [42, 42, 7]) {
      await withServer({ seed, faults }, async (target) => {
        patterns.push(await statuses(target));
        target.reset();
        expect(await statuses(target)).toEqual(patterns.at(-1));
      });
    }

    expect(patterns[0]).toEqual(patterns[1]);
    expect(patterns[0]).not.toEqual(patterns[2]);
    expect(patterns[0]).toContain(200);
    expect(patterns[0]).toContain(503);
  });

  it('waits for drain instead of buffering a long stream for a stalled reader', async () => {
    server.setScript([{ text: 'word '.repeat(100_000) }]);
    const { port } = server;
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const outgoing = httpRequest(
        { host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions' },
        resolve,
      );
      outgoing.on('error', reject);
      outgoing.setHeader('content-type', 'application/json');
      outgoing.end(JSON.stringify({ ...hello, stream: true }));
    });
    response.pause();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stalledAt = server.calls[0]?.eventsWritten ?? 0;
    expect(stalledAt).toBeGreaterThan(0);
    expect(stalledAt).toBeLessThan(50_000);
    expect(server.calls[0]?.outcome).toBe('pending');

    let tail = '';
    response.setEncoding('utf8');
    response.on('data', (text: string) => {
      tail = (tail + text).slice(-32);
    });
    response.resume();
    await new Promise((resolve) => response.on('end', resolve));
    expect(tail.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(server.calls[0]).toMatchObject({ outcome: 'completed', eventsWritten: 100_004 });
  });

  it('ends hanging requests when it closes', async () => {
    const target = await createMockModelServer({ faults: { hang: true } });
    const pending = postChat(target, hello);
    await vi.waitFor(() => expect(target.calls).toHaveLength(1));
    const failure = expect(pending).rejects.toThrow();
    await target.close();

    await failure;
    expect(target.calls[0]?.outcome).toBe('server-closed');
  });
});
