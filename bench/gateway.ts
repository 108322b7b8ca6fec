import { Agent, request as httpRequest } from 'node:http';
import { loadavg } from 'node:os';
import { startChild, stopChild } from './children.ts';
import { cpuMs, machine, percentile, processTree, progress } from './support.ts';

/** One request body: a short non-streaming completion. */
const body = JSON.stringify({
  model: 'bench',
  messages: [{ role: 'user', content: 'hello from the gateway benchmark' }],
  max_tokens: 32,
});

interface Target {
  readonly url: string;
  readonly key: string;
  readonly model: string;
}

/** Posts one completion over `agent` and resolves with its status once the body is read. */
function post(target: Target, agent: Agent, payload: string): Promise<number> {
  const url = new URL(`${target.url}/chat/completions`);
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${target.key}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
      },
      (incoming) => {
        incoming.on('data', () => undefined);
        incoming.on('end', () => resolve(incoming.statusCode ?? 0));
        incoming.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(payload);
  });
}

interface Measured {
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly cpuMsPerRequest: number;
  /** The share of the first process given (the server's Node process) alone. */
  readonly serverCpuMsPerRequest: number;
  readonly errors: number;
}

/** Sends `total` requests, `concurrency` at a time; CPU is summed over `processes()`. */
async function measure(options: {
  readonly target: Target;
  readonly concurrency: number;
  readonly total: number;
  readonly processes: () => number[];
}): Promise<Measured> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });
  const payload = body.replace('"bench"', JSON.stringify(options.target.model));
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const server = options.processes()[1] ?? options.processes()[0] ?? 0;
  const cpuBefore = cpuMs(options.processes());
  const serverBefore = cpuMs([server]);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next < options.total) {
        next += 1;
        const begin = performance.now();
        const status = await post(options.target, agent, payload).catch(() => 0);
        latencies.push(performance.now() - begin);
        if (status !== 200) errors += 1;
      }
    }),
  );
  const elapsed = performance.now() - started;
  // Backends that started during the window are counted; ones that ended are lost (rare).
  const cpu = cpuMs(options.processes()) - cpuBefore;
  const serverCpu = cpuMs([server]) - serverBefore;
  agent.destroy();
  latencies.sort((a, b) => a - b);
  return {
    rps: (latencies.length * 1000) / elapsed,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    cpuMsPerRequest: cpu / latencies.length,
    serverCpuMsPerRequest: serverCpu / latencies.length,
    errors,
  };
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

function describe(name: string, result: Measured): void {
  progress(
    `${name}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, ${result.cpuMsPerRequest.toFixed(3)} CPU ms/request (server process ${result.serverCpuMsPerRequest.toFixed(3)}), ${result.errors} errors`,
  );
}

/**
 * Gateway overhead, in one run: the mock model called directly (baseline), through a bare
 * node:http proxy (the floor) and through Brigade's `/v1/chat/completions` with auth, request
 * rate limit, a budget reservation and settlement, and the usage record. Each server is its own
 * process; CPU per request is the sum over the processes serving it (mock, proxy or Brigade,
 * and Brigade's embedded PostgreSQL with its backends), read from /proc.
 */
export async function run(quick: boolean): Promise<object> {
  const load = loadavg();
  const mock = await startChild(['mock']);
  const proxy = await startChild(['proxy', mock.url]);
  progress('starting Brigade (embedded PostgreSQL)');
  const brigade = await startChild(['brigade', mock.url]);
  try {
    const direct: Target = { url: mock.url, key: 'none', model: 'mock-model' };
    const floor: Target = { url: proxy.url, key: 'none', model: 'mock-model' };
    const gateway: Target = { url: brigade.url, key: brigade.key ?? '', model: 'bench' };
    const mockOnly = () => [mock.pid];
    const floorProcesses = () => [mock.pid, proxy.pid];
    const brigadeProcesses = () => [mock.pid, ...processTree(brigade.pid)];
    const c1Total = quick ? 300 : 3_000;
    const concurrency = 16;
    const cTotal = quick ? 2_000 : 20_000;

    progress('warm-up');
    for (const target of [direct, floor, gateway])
      await measure({ target, concurrency: 8, total: quick ? 300 : 2_000, processes: mockOnly });

    const directC1 = await measure({
      target: direct,
      concurrency: 1,
      total: c1Total,
      processes: mockOnly,
    });
    describe('direct c1', directC1);
    const floorC1 = await measure({
      target: floor,
      concurrency: 1,
      total: c1Total,
      processes: floorProcesses,
    });
    describe('floor c1', floorC1);
    const gatewayC1 = await measure({
      target: gateway,
      concurrency: 1,
      total: c1Total,
      processes: brigadeProcesses,
    });
    describe('brigade c1', gatewayC1);
    const directC = await measure({
      target: direct,
      concurrency,
      total: cTotal,
      processes: mockOnly,
    });
    describe(`direct c${concurrency}`, directC);
    const floorC = await measure({
      target: floor,
      concurrency,
      total: cTotal,
      processes: floorProcesses,
    });
    describe(`floor c${concurrency}`, floorC);
    const gatewayC = await measure({
      target: gateway,
      concurrency,
      total: cTotal,
      processes: brigadeProcesses,
    });
    describe(`brigade c${concurrency}`, gatewayC);
    return {
      bench: 'gateway',
      metrics: {
        cpu_ms_per_request: round(gatewayC.cpuMsPerRequest),
        cpu_ms_per_request_floor: round(floorC.cpuMsPerRequest),
        rps: round(gatewayC.rps),
        rps_direct: round(directC.rps),
        rps_floor: round(floorC.rps),
        added_p50_ms_c1: round(gatewayC1.p50 - directC1.p50),
        errors: gatewayC.errors + gatewayC1.errors,
        p50_ms: round(gatewayC.p50),
        p99_ms: round(gatewayC.p99),
        p50_ms_c1: round(gatewayC1.p50),
        cpu_ms_per_request_added: round(gatewayC.cpuMsPerRequest - directC.cpuMsPerRequest),
      },
      baseline: {
        description: `the mock model called directly, and through a bare node:http proxy; concurrency ${concurrency} (c1 for latency)`,
        cpu_ms_per_request_direct: round(directC.cpuMsPerRequest),
        p50_ms_direct: round(directC.p50),
        p99_ms_direct: round(directC.p99),
        p50_ms_direct_c1: round(directC1.p50),
        p50_ms_floor: round(floorC.p50),
        p99_ms_floor: round(floorC.p99),
        added_p50_ms_c1_floor: round(floorC1.p50 - directC1.p50),
        errors_direct: directC.errors + directC1.errors,
        errors_floor: floorC.errors + floorC1.errors,
      },
      targets: { cpu_ms_per_request: 0.7, added_p50_ms_c1: 0.5 },
      machine: { ...machine(), loadavg: load.map((value) => round(value)) },
    };
  } finally {
    await stopChild(brigade);
    await stopChild(proxy);
    await stopChild(mock);
  }
}
