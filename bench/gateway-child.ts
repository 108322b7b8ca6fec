/**
 * The processes of the gateway benchmark, each started as its own Node process so its CPU time
 * can be read from /proc on its own: `mock [tools|slow]` (the mock OpenAI model; `tools`: scripted for a model → tool → model run; `slow`: 50 words over 10 s), `proxy <target>` (a bare
 * node:http proxy, the floor), `brigade <mock url>` (Brigade with its embedded PostgreSQL, a
 * tenant, a key and a budget policy) and `runs <mock url>` (Brigade as the runs benchmark
 * configures it, with an admin key). Each prints one JSON line on stdout when ready and runs
 * until it gets SIGTERM.
 */
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMockModelServer } from '../src/testing/index.ts';
import { call, seedAdmin, startBenchServer } from './bench-server.ts';
import { profileOnSignal } from './support.ts';

const [mode, target] = process.argv.slice(2);

function ready(value: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ pid: process.pid, ...value })}\n`);
}

/**
 * The mock model; with `tools`, it answers as a 3-step run needs: a `calculator` call first,
 * then, after the tool's result, a short text.
 */
async function startMock(variant: string | undefined): Promise<() => Promise<void>> {
  const mock = await createMockModelServer({
    models: ['mock-model'],
    ...(variant === 'tools'
      ? {
          script: (request) =>
            request.messages.at(-1)?.role === 'tool'
              ? { text: 'The answer is 42.' }
              : { toolCalls: [{ name: 'calculator', arguments: { expression: '6*7' } }] },
        }
      : {}),
    // `slow`: 50 words, one every 200 ms (the streams benchmark's model).
    ...(variant === 'slow'
      ? {
          script: () => ({
            text: Array.from({ length: 50 }, (_, index) => `w${index}`).join(' '),
            fault: { tokenDelayMs: 200 },
          }),
        }
      : {}),
  });
  // The mock records every call; drop the records so memory stays flat over a long run.
  const timer = setInterval(() => mock.reset(), 1_000);
  ready({ url: mock.url });
  return async () => {
    clearInterval(timer);
    await mock.close();
  };
}

/** The floor: forwards every request to `target` over keep-alive connections, nothing else. */
async function startProxy(base: string): Promise<() => Promise<void>> {
  const upstream = new URL(base);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const server = createServer((incoming, outgoing) => {
    const forwarded = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: incoming.method,
        path: `${upstream.pathname.replace(/\/v1$/, '')}${incoming.url ?? '/'}`,
        headers: incoming.headers,
        agent,
      },
      (answer) => {
        outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(outgoing);
      },
    );
    forwarded.on('error', () => {
      outgoing.writeHead(502).end();
    });
    incoming.pipe(forwarded);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  ready({ url: `http://127.0.0.1:${port}/v1` });
  return async () => {
    agent.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
}

/** Brigade billing the route `bench` to the mock, for a tenant whose budget binds every call. */
async function startBrigade(mockUrl: string): Promise<() => Promise<void>> {
  const server = await startBenchServer({
    providers: { mock: { type: 'openai-compatible', baseUrl: mockUrl } },
    models: { prices: { 'mock:mock-model': { inputPerMTok: 1, outputPerMTok: 2 } } },
    routes: [{ name: 'bench', deployments: [{ model: 'mock:mock-model' }] }],
  });
  const key = await seedAdmin(server.url);
  // A budget that never runs out but binds every call, so reserve and settle really happen.
  await call(`${server.url}/v1/policies`, {
    method: 'POST',
    key,
    body: { level: 'tenant', limits: { budget: { amountUsd: 1_000_000, period: 'day' } } },
  });
  ready({ url: `${server.url}/v1`, key });
  return () => server.stop();
}

/**
 * Brigade as the runs benchmark drives it: durable runs on 64 slots, the mock provider as
 * `mock`, and an admin key (the load generator runs in the benchmark's own process, as a
 * remote client would, so it does not share Brigade's event loop).
 */
async function startRunsServer(mockUrl: string): Promise<() => Promise<void>> {
  profileOnSignal('runs');
  const server = await startBenchServer({
    // The defaults a server starts with: 64 slots, a claim poll every 250 ms (finishing runs
    // and new ones wake the scheduler; the poll only catches what a wake-up missed).
    runs: { concurrency: 64 },
    providers: { mock: { type: 'openai-compatible', baseUrl: mockUrl } },
  });
  const key = await seedAdmin(server.url);
  ready({ url: server.url, key });
  return () => server.stop();
}

const start =
  mode === 'mock'
    ? startMock(target)
    : mode === 'proxy' && target !== undefined
      ? startProxy(target)
      : mode === 'brigade' && target !== undefined
        ? startBrigade(target)
        : mode === 'runs' && target !== undefined
          ? startRunsServer(target)
          : Promise.reject(
              new Error(
                'usage: gateway-child.ts mock [tools|slow] | proxy <url> | brigade <url> | runs <url>',
              ),
            );

const stop = await start;
process.once('SIGTERM', () => {
  void stop().finally(() => process.exit(0));
});
