import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer, type ServerType } from '@hono/node-server';
import type { Config } from '../config/index.ts';
import type { Logger } from '../observability/index.ts';
import type { BrigadeApp } from './app-env.ts';
import { accessLog } from './middleware/access-log.ts';

/** The HTTP listener of a Brigade process. */
export interface HttpServer {
  /** Starts listening; resolves with the bound URL. */
  listen(): Promise<string>;
  /**
   * Stops accepting connections, gives in-flight requests `shutdownGraceMs` to finish, then
   * closes every connection. Does nothing when not listening.
   */
  close(): Promise<void>;
}

/** Serves `app` on node:http (with the access log) as `config.server` says. */
export function createHttpServer(options: {
  readonly app: BrigadeApp;
  readonly logger: Logger;
  readonly server: Config['server'];
}): HttpServer {
  const settings = options.server;
  let server: ServerType | undefined;
  return {
    listen() {
      const wrapped = accessLog(options.app, options.logger);
      return new Promise((resolve, reject) => {
        // hostname: the host of requests that name none (HTTP/1.0 health checks send no Host).
        const created = createAdaptorServer({ fetch: wrapped, hostname: settings.host });
        created.once('error', reject);
        created.listen(
          { port: settings.port, host: settings.host, backlog: settings.listenBacklog },
          () => {
            const info = created.address() as AddressInfo;
            const host = info.family === 'IPv6' ? `[${info.address}]` : info.address;
            resolve(`http://${host}:${info.port}`);
          },
        );
        (created as Server).requestTimeout = settings.requestTimeoutMs;
        server = created;
      });
    },
    async close() {
      const current = server;
      if (current === undefined) return;
      const closed = new Promise<void>((resolve) => current.close(() => resolve()));
      if ('closeIdleConnections' in current) current.closeIdleConnections();
      const grace = new Promise<void>((resolve) =>
        setTimeout(resolve, settings.shutdownGraceMs).unref(),
      );
      await Promise.race([closed, grace]);
      if ('closeAllConnections' in current) current.closeAllConnections();
    },
  };
}
