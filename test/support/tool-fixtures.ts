import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { loadConfig } from '../../src/config/index.ts';
import { createBrigade } from '../../src/main.ts';
import { createLogger } from '../../src/observability/index.ts';
import { type ApiClient, waitForRun } from './api-client.ts';
import {
  createTestDatabase,
  type TestDatabase,
  type TestServer,
  testOperatorKey,
} from './test-brigade.ts';

/** A request the fake upstream API received. */
export interface UpstreamRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/**
 * A fake third-party API on 127.0.0.1 that records every request. `reply` decides the answer;
 * by default it echoes the request, headers included — a hostile upstream that reflects the
 * caller's credential back into the tool output.
 */
export async function startUpstream(
  reply?: (request: UpstreamRequest) => unknown,
): Promise<{ url: string; requests: UpstreamRequest[]; close(): Promise<void> }> {
  const requests: UpstreamRequest[] = [];
  const server = createServer((incoming, response) => {
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.on('end', () => {
      const request = {
        method: incoming.method ?? 'GET',
        url: incoming.url ?? '/',
        headers: incoming.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      requests.push(request);
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(reply === undefined ? request : reply(request)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A test server whose pino output is kept in `logs` (debug level), for leak checks. */
export interface LoggedServer extends TestServer {
  readonly logs: string[];
}

/** A fresh base64 vault master key. */
export function newMasterKey(): string {
  return randomBytes(32).toString('base64');
}

/**
 * Starts Brigade like `startTestServer`, with a vault master key, tenant HTTP tools allowed to
 * reach 127.0.0.1, and every log line captured. With `extra.database` it joins another
 * server's database (a second process of the same deployment) and leaves it in place on stop.
 */
export async function startLoggedServer(
  file: Record<string, unknown> = {},
  env: Record<string, string> = {},
  extra: { readonly database?: TestDatabase } = {},
): Promise<LoggedServer> {
  const database = extra.database ?? (await createTestDatabase());
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(chunk.toString('utf8'));
      done();
    },
  });
  const config = loadConfig({
    file: {
      runs: { pollIntervalMs: 50 },
      ...file,
      tools: { tenantHttp: { allowPrivateNetworks: true }, ...(file['tools'] as object) },
      server: { port: 0, shutdownGraceMs: 1000 },
    },
    env: {
      DATABASE_URL: database.url,
      BRIGADE_OPERATOR_KEY: testOperatorKey,
      BRIGADE_MASTER_KEY: newMasterKey(),
      ...env,
    },
  });
  const brigade = await createBrigade({
    config,
    logger: createLogger({ level: 'debug', destination }),
  });
  const url = await brigade.listen();
  return {
    url,
    brigade,
    database,
    logs,
    async stop() {
      await brigade.stop();
      if (extra.database === undefined) await database.drop();
    },
  };
}

/** Starts a run on a new thread and waits for `statuses`; returns ids, run and answer. */
export async function runOnce(
  client: ApiClient,
  options: { agentId: string; input: string; statuses?: readonly string[] },
) {
  const thread = await client.post<{ id: string }>('/v1/threads', {});
  const run = await client.post<{ id: string }>(`/v1/threads/${thread.body.id}/runs`, {
    agentId: options.agentId,
    input: options.input,
  });
  if (run.status !== 201) throw new Error(`run: ${run.status} ${JSON.stringify(run.body)}`);
  const ids = { threadId: thread.body.id, runId: run.body.id };
  const finished = await waitForRun<{ status: string; errorCode: string | null }>(
    client,
    ids,
    options.statuses,
  );
  const messages = await client.get<{ data: { role: string; content: { text?: string }[] }[] }>(
    `/v1/threads/${ids.threadId}/messages`,
  );
  // The event stream of a run that is not finished stays open: read it only once it ended.
  const events = ['completed', 'failed', 'cancelled', 'expired'].includes(finished.status)
    ? await client.request('GET', `/v1/threads/${ids.threadId}/runs/${ids.runId}/events`)
    : { body: '' };
  return {
    ids,
    run: finished,
    answer: messages.body.data.at(-1)?.content[0]?.text ?? '',
    transcript: JSON.stringify(messages.body) + JSON.stringify(events.body),
  };
}
