import { createServer, type Server } from 'node:net';
import { OpenAPIHono } from '@hono/zod-openapi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../config/index.ts';
import { createLogger } from '../observability/index.ts';
import type { AppEnv } from './app-env.ts';
import { createHttpServer } from './http-server.ts';

let taken: Server;
let port: number;

beforeAll(async () => {
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  port = (taken.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise((resolve) => taken.close(resolve));
});

function serverOn(server: Record<string, unknown>) {
  return createHttpServer({
    app: new OpenAPIHono<AppEnv>(),
    logger: createLogger({ level: 'silent' }),
    server: loadConfig({ file: { server }, env: {} }).server,
  });
}

describe('createHttpServer', () => {
  it('names the address and the setting when the port is taken', async () => {
    await expect(serverOn({ port }).listen()).rejects.toThrow(
      `cannot listen on 127.0.0.1:${port}: the port is in use; set server.port or BRIGADE_PORT`,
    );
  });

  it('names the setting when the host is no address of this machine', async () => {
    await expect(serverOn({ host: '192.0.2.1', port: 0 }).listen()).rejects.toThrow(
      /cannot listen on 192\.0\.2\.1:0: no such address on this machine; set server\.host/,
    );
  });
});
