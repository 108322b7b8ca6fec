import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { processEnvironment } from '../src/config/index.ts';
import { apiClient, seedTenant, seedUser } from '../test/support/api-client.ts';
import { spawnServer } from '../test/support/spawn-server.ts';
import { startChild, stopChild } from './children.ts';
import { machine, percentile, progress } from './support.ts';

/** What the slow mock (`gateway-child.ts mock slow`) streams: 50 words, one every 200 ms. */
const tokens = 50;
const tokenDelayMs = 200;

function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /VmRSS:\s+(\d+) kB/.exec(status);
    return match?.[1] === undefined ? 0 : Number(match[1]) / 1024;
  } catch {
    return 0;
  }
}

/**
 * Reads one SSE response; returns ms to the first message-delta and, when it did not complete,
 * why (the HTTP status and problem code, or the terminal event and its error code).
 */
async function consume(
  response: Response,
  started: number,
): Promise<{ ttft: number; completed: boolean; failure?: string }> {
  if (!response.ok) {
    const body = (await response.json().catch(() => ({}))) as { code?: string };
    return { ttft: Number.NaN, completed: false, failure: `http ${response.status} ${body.code}` };
  }
  const reader = response.body?.getReader();
  if (reader === undefined) return { ttft: Number.NaN, completed: false, failure: 'no body' };
  const decoder = new TextDecoder();
  let ttft = Number.NaN;
  let tail = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const chunk = tail + decoder.decode(value, { stream: true });
    if (Number.isNaN(ttft) && chunk.includes('event: message-delta'))
      ttft = performance.now() - started;
    if (chunk.includes('event: run-completed')) return { ttft, completed: true };
    const terminal =
      /event: (run-(?:failed|cancelled|expired))\ndata: .*?"(?:errorCode|code)":"([a-z_]+)"/.exec(
        chunk,
      );
    if (terminal !== null || /event: run-(failed|cancelled|expired)/.test(chunk)) {
      return {
        ttft,
        completed: false,
        failure: `${terminal?.[1] ?? 'run ended'} ${terminal?.[2]}`,
      };
    }
    tail = chunk.slice(-64);
  }
  return { ttft, completed: false, failure: 'stream closed early' };
}

/**
 * Many concurrent streaming runs from a slow model (the mock provider, in a process of its own,
 * streaming 50 words over 10 s), against a server in its own process: peak server RSS, errors,
 * and time to first token added over the model's own first-token delay.
 */
export async function run(quick: boolean): Promise<object> {
  const streams = quick ? 200 : 2000;
  const env = processEnvironment();
  const databaseUrl = env['BENCH_DATABASE_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const name = `brigade_bench_${Date.now()}`;
  const admin = new pg.Client({ connectionString: databaseUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(databaseUrl);
  url.pathname = `/${name}`;
  // The server as `npm start` runs it: compiled first.
  progress('compiling (npm run build)');
  execFileSync('npm', ['run', '-s', 'build'], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    stdio: 'inherit',
  });
  const mock = await startChild(['mock', 'slow']);
  const server = await spawnServer({
    compiled: true,
    databaseUrl: url.toString(),
    config: {
      providers: { mock: { type: 'openai-compatible', baseUrl: mock.url } },
      // One user streams every run: the per-tenant and per-user caps (defaults 32 and 8) and
      // the queue limit would measure the fair scheduler, not streaming, so they are lifted.
      runs: {
        concurrency: streams,
        pollIntervalMs: 100,
        maxConcurrentPerTenant: 0,
        maxConcurrentPerUser: 0,
        maxQueuedPerTenant: 0,
      },
      database: { poolSize: 40 },
      limits: { requestsPerMinute: { key: 10_000_000, user: 10_000_000, tenant: 10_000_000 } },
    },
  });
  const pid = server.child.pid ?? 0;
  let peak = rssMb(pid);
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssMb(pid));
  }, 200);
  try {
    const operator = apiClient(server.url, 'test-operator-key-xxxxxxxxxxxxxxxx');
    const tenantId = await seedTenant(operator, `streams-${Date.now()}`);
    const user = await seedUser(operator, { tenantId, role: 'admin' });
    const client = apiClient(server.url, user.secret);
    const agent = await client.post<{ id: string }>('/v1/agents', {
      name: 'slow',
      model: 'mock:mock-model',
      maxOutputTokens: tokens + 5,
      runTimeoutMs: 600_000,
    });
    const input = Array.from({ length: tokens - 2 }, (_, index) => `t${index}`).join(' ');
    const threads: string[] = [];
    for (let index = 0; index < streams; index += 1) {
      threads.push((await client.post<{ id: string }>('/v1/threads', {})).body.id);
    }
    const idleRss = rssMb(pid);
    progress(`${streams} threads ready, server RSS ${idleRss.toFixed(0)} MB; starting streams`);
    let errors = 0;
    const failures = new Map<string, number>();
    const failed = (why: string) => {
      errors += 1;
      failures.set(why, (failures.get(why) ?? 0) + 1);
    };
    const ttfts: number[] = [];
    const started = performance.now();
    await Promise.all(
      threads.map(async (threadId) => {
        const begin = performance.now();
        try {
          const response = await fetch(`${server.url}/v1/threads/${threadId}/runs`, {
            method: 'POST',
            headers: { authorization: `Bearer ${user.secret}`, 'content-type': 'application/json' },
            body: JSON.stringify({ agentId: agent.body.id, input, stream: true }),
          });
          const result = await consume(response, begin);
          if (!result.completed) failed(result.failure ?? 'unknown');
          if (!Number.isNaN(result.ttft)) ttfts.push(result.ttft);
        } catch (error) {
          failed(
            `client ${error instanceof Error ? `${error.message} ${(error.cause as Error | undefined)?.message ?? ''}` : String(error)}`,
          );
        }
      }),
    );
    const elapsed = performance.now() - started;
    ttfts.sort((a, b) => a - b);
    return {
      bench: 'streams',
      metrics: {
        streams,
        peak_rss_mb: Math.round(peak),
        errors,
        ttft_added_p99_ms: Math.round(percentile(ttfts, 0.99) - tokenDelayMs),
        ttft_added_p50_ms: Math.round(percentile(ttfts, 0.5) - tokenDelayMs),
        wall_s: Math.round(elapsed / 100) / 10,
      },
      failures: Object.fromEntries(failures),
      baseline: {
        description:
          'the model itself: first token after tokenDelayMs, all tokens over tokens × tokenDelayMs',
        first_token_ms: tokenDelayMs,
        stream_s: (tokens * tokenDelayMs) / 1000,
        idle_rss_mb: Math.round(idleRss),
      },
      targets: { peak_rss_mb: 600, errors: 0 },
      machine: machine(),
    };
  } finally {
    clearInterval(sampler);
    server.child.kill('SIGTERM');
    await server.exited;
    await stopChild(mock);
    await admin.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
    await admin.end();
  }
}
