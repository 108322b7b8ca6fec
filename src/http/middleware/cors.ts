import type { MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import type { AppEnv } from '../app-env.ts';

/** Options for {@link createCors} (`server.cors` of the configuration). */
export interface CorsOptions {
  /** Origins allowed, as browsers send them in `Origin` (config/cors-origin.ts). */
  readonly origins: readonly string[];
  readonly credentials: boolean;
  readonly maxAgeSeconds: number;
}

/**
 * Request headers every allowed origin may send, whatever its preflight asks: credentials, the
 * event stream's resume point, ids, the tenant hint and the response cache's bypass
 * (`X-Brigade-Cache: bypass`, `Cache-Control: no-cache`).
 */
export const corsAllowedHeaders: readonly string[] = [
  'Authorization',
  'Content-Type',
  'Last-Event-ID',
  'X-Request-Id',
  'X-Brigade-Tenant',
  'X-Brigade-Cache',
  'Cache-Control',
];

/**
 * What a browser client may read: ids to quote, limits to respect, where a run went, whether
 * the cache answered, whether to retry (the official OpenAI clients read `x-should-retry`) and
 * why a credential was refused.
 */
export const corsExposedHeaders: readonly string[] = [
  'X-Request-Id',
  'X-Trace-Id',
  'Retry-After',
  'RateLimit',
  'RateLimit-Policy',
  'X-Brigade-Thread-Id',
  'X-Brigade-Run-Id',
  'X-Brigade-Truncated',
  'X-Brigade-Cache',
  'X-Should-Retry',
  'WWW-Authenticate',
];

/** An HTTP field name (RFC 9110 §5.1: a token). */
const fieldName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers a preflight may ask for at most (the official `openai` client asks for ~12). */
const maxRequestedHeaders = 64;

/**
 * Whether `requested` (an `Access-Control-Request-Headers` value) is a short list of field
 * names: only then is it echoed back as allowed.
 */
function isHeaderList(requested: string): boolean {
  const names = requested.split(',').map((name) => name.trim());
  return names.length <= maxRequestedHeaders && names.every((name) => fieldName.test(name));
}

/**
 * CORS for the configured origins (Hono's middleware). An allowed origin's preflight is
 * granted the request headers it asks for, as common CORS middlewares do when no list is set:
 * SDKs send their own (the official `openai` client sends `X-Stainless-*` on every call), and
 * the origin is one the operator trusts with credentials already. A request for anything but
 * a list of field names, and every other origin's preflight, is answered with
 * {@link corsAllowedHeaders}; other origins get no `Access-Control-Allow-Origin`, so browsers
 * refuse them.
 */
export function createCors(options: CorsOptions): MiddlewareHandler<AppEnv> {
  const shared = {
    origin: [...options.origins],
    credentials: options.credentials,
    maxAge: options.maxAgeSeconds,
    exposeHeaders: [...corsExposedHeaders],
  };
  const listed = cors({ ...shared, allowHeaders: [...corsAllowedHeaders] });
  // Hono echoes the preflight's Access-Control-Request-Headers when no list is given (with
  // `Vary: Access-Control-Request-Headers`, so a cache keeps each answer apart).
  const echoing = cors({ ...shared, allowHeaders: [] });
  return (context, next) => {
    const requested = context.req.header('access-control-request-headers');
    const echo =
      context.req.method === 'OPTIONS' &&
      requested !== undefined &&
      options.origins.includes(context.req.header('origin') ?? '') &&
      isHeaderList(requested);
    return (echo ? echoing : listed)(context, next);
  };
}
