import { Agent, request as httpRequest } from 'node:http';
import { generateLocal } from '../src/gateway/local-model.ts';
import { toolLoopCore } from '../src/runtime/cores/tool-loop-core.ts';
import { builtInTools } from '../src/runtime/tools/tool-registry.ts';
import { call, seedAdmin, startBenchServer } from './bench-server.ts';
import { cpuMs, machine, percentile, postgresPids, profiled, progress } from './support.ts';

const input = 'call calculator {"expression":"6*7"}';

/**
 * Sends one create-and-stream request over a keep-alive `node:http` agent and reads the
 * stream to its end; returns the terminal event's type. The load generator shares the server's
 * process and cores, so it is kept cheap: `fetch()` costs several times as much per request
 * (undici's web streams), which the server would pay for in throughput.
 */
function createAndStream(
  agent: Agent,
  url: URL,
  payload: { readonly key: string; readonly body: string },
): Promise<string> {
  const { key, body } = payload;
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () => {
          const terminal = /event: (run-completed|run-failed|run-cancelled|run-expired)/.exec(text);
          resolve(terminal?.[1] ?? `none (status ${response.statusCode})`);
        });
        response.on('error', reject);
      },
    );
    request.on('error', reject);
    request.end(body);
  });
}

/** Baseline: the same 3-step loop (model → tool → model) run in-process, with no harness. */
async function baselineRun(): Promise<void> {
  const calculator = builtInTools.find((tool) => tool.name === 'calculator');
  if (calculator === undefined) throw new Error('calculator missing');
  const controller = new AbortController();
  await toolLoopCore.run({
    runId: 'baseline',
    instructions: '',
    messages: [{ role: 'user', content: [{ type: 'text', text: input }], provenance: 'user' }],
    maxSteps: 4,
    signal: controller.signal,
    emit: () => undefined,
    logger: { info: () => undefined, warn: () => undefined },
    model: {
      generate: (request) =>
        generateLocal({
          ...request,
          maxOutputTokens: 100,
          signal: controller.signal,
          tokenDelayMs: 0,
        }),
    },
    tools: {
      available: [calculator],
      call: async (toolCall) => ({
        status: 'ok',
        output: await calculator.execute(toolCall.input as Record<string, unknown>, {
          idempotencyKey: 'x',
          signal: controller.signal,
        }),
      }),
    },
  });
}

async function measure(options: { concurrency: number; total: number; once: () => Promise<void> }) {
  const latencies: number[] = [];
  let next = 0;
  const pids = [process.pid, ...postgresPids()];
  const cpuBefore = cpuMs(pids);
  const nodeBefore = cpuMs([process.pid]);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next < options.total) {
        next += 1;
        const begin = performance.now();
        await options.once();
        latencies.push(performance.now() - begin);
      }
    }),
  );
  const elapsed = performance.now() - started;
  latencies.sort((a, b) => a - b);
  return {
    perSecond: (latencies.length * 1000) / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    cpuMsPerRun: (cpuMs([...pids, ...postgresPids()]) - cpuBefore) / latencies.length,
    nodeCpuMsPerRun: (cpuMs([process.pid]) - nodeBefore) / latencies.length,
  };
}

/** Durable 3-step runs (model → tool → model) end to end through HTTP + SSE, at c=1 and c=64. */
export async function run(quick: boolean): Promise<object> {
  const server = await startBenchServer({ runs: { concurrency: 64, pollIntervalMs: 50 } });
  const clientAgent = new Agent({ keepAlive: true, maxSockets: 128 });
  try {
    const key = await seedAdmin(server.url);
    const agent = await call<{ id: string }>(`${server.url}/v1/agents`, {
      method: 'POST',
      key,
      body: { name: 'bench', tools: ['calculator'] },
    });
    const threads = await Promise.all(
      Array.from({ length: 64 }, () =>
        call<{ id: string }>(`${server.url}/v1/threads`, { method: 'POST', key, body: {} }),
      ),
    );
    let counter = 0;
    const body = JSON.stringify({ agentId: agent.id, input, stream: true });
    const once = async () => {
      const thread = threads[counter++ % threads.length];
      const url = new URL(`${server.url}/v1/threads/${thread?.id}/runs`);
      const outcome = await createAndStream(clientAgent, url, { key, body });
      if (outcome !== 'run-completed') throw new Error(`run ended with ${outcome}`);
    };
    progress('warm-up');
    await measure({ concurrency: 4, total: 20, once });
    const c1 = await measure({ concurrency: 1, total: quick ? 30 : 150, once });
    progress(`c1: ${c1.perSecond.toFixed(1)} runs/s, p50 ${c1.p50.toFixed(1)} ms`);
    const c64 = await profiled('runs-c64', () =>
      measure({ concurrency: 64, total: quick ? 300 : 2000, once }),
    );
    progress(`c64: ${c64.perSecond.toFixed(1)} runs/s, p99 ${c64.p99.toFixed(1)} ms`);
    const direct = await measure({ concurrency: 1, total: 2000, once: baselineRun });
    return {
      bench: 'runs',
      metrics: {
        runs_per_s_c1: round(c1.perSecond),
        cpu_ms_per_run_c1: round(c1.cpuMsPerRun),
        node_cpu_ms_per_run_c1: round(c1.nodeCpuMsPerRun),
        runs_per_s_c64: round(c64.perSecond),
        p50_ms_c1: round(c1.p50),
        p99_ms_c64: round(c64.p99),
        cpu_ms_per_run_c64: round(c64.cpuMsPerRun),
        // Of which the Node process (server and benchmark client); the rest is PostgreSQL.
        node_cpu_ms_per_run_c64: round(c64.nodeCpuMsPerRun),
      },
      baseline: {
        description:
          'the same tool-loop core with the local model and calculator called in-process, no harness',
        runs_per_s: round(direct.perSecond),
        p50_ms: round(direct.p50),
      },
      targets: { runs_per_s_c64: 120 },
      machine: machine(),
    };
  } finally {
    clientAgent.destroy();
    await server.stop();
  }
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
