import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdaptorServer, type ServerType } from '@hono/node-server';
import type { Config } from '../config/index.ts';
import type { Logger } from '../observability/index.ts';
import type { BrigadeApp } from './app-env.ts';
import { answerClientError } from './client-error.ts';
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

/**
 * The reason a listener could not start, in the operator's terms: the address and the setting
 * that chooses it (Node's `listen EADDRINUSE: address already in use` names neither).
 */
function describeListenError(error: Error, settings: Config['server']): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const address = `${settings.host}:${settings.port}`;
  const fix = 'set server.port or BRIGADE_PORT (0 picks a free port)';
  if (code === 'EADDRINUSE')
    return new Error(`cannot listen on ${address}: the port is in use; ${fix}`, { cause: error });
  if (code === 'EACCES')
    return new Error(`cannot listen on ${address}: permission denied; ${fix}`, { cause: error });
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND')
    return new Error(
      `cannot listen on ${address}: no such address on this machine; set server.host or BRIGADE_HOST`,
      { cause: error },
    );
  return error;
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
        created.once('error', (error) => reject(describeListenError(error, settings)));
        created.on('clientError', answerClientError);
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
