import { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { AppError, UnauthenticatedError } from '../domain/errors.ts';
import type { UserPrincipal } from '../domain/identity/principal.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Tracing } from '../observability/tracing.ts';
import type { BindingLimit } from '../runtime/policy-cache.ts';
import type { RequestLimiter } from '../runtime/request-limiter.ts';
import type { AppEnv, BrigadeApp, RouteServices } from './app-env.ts';
import type { Authenticator } from './auth/authenticator.ts';
import { answerClientGone } from './client-gone.ts';
import { docsPage } from './docs-page.ts';
import {
  type ErrorLogger,
  renderProblem,
  toValidationError,
  type ZodIssueLike,
} from './error-response.ts';
import { createCors } from './middleware/cors.ts';
import { httpMetrics } from './middleware/http-metrics.ts';
import { httpTracing } from './middleware/http-tracing.ts';
import { assignRequestId } from './middleware/request-id.ts';
import {
  assertFiniteNumbers,
  assertShallowJson,
  assertStorableJson,
} from './middleware/unstorable-text.ts';
import { readUtf8Body } from './middleware/utf8-body.ts';
import { isOpenAiPath, renderOpenAiError } from './openai/openai-error.ts';
import { registerAgentRoutes } from './routes/agent-routes.ts';
import { registerApprovalRoutes } from './routes/approval-routes.ts';
import { registerAuditRoutes } from './routes/audit-routes.ts';
import { registerConsentRoutes } from './routes/consent-routes.ts';
import { registerCredentialRoutes } from './routes/credential-routes.ts';
import { registerDataRightsRoutes } from './routes/data-rights-routes.ts';
import { registerKeyRoutes } from './routes/key-routes.ts';
import { registerMcpRoutes } from './routes/mcp-routes.ts';
import { registerMeRoutes } from './routes/me-routes.ts';
import { registerMemoryRoutes } from './routes/memory-routes.ts';
import { metricsPath, registerMetricsRoute } from './routes/metrics-routes.ts';
import { registerModelRouteRoutes } from './routes/model-route-routes.ts';
import { registerOidcRoutes } from './routes/oidc-routes.ts';
import { registerOpenAiModelRoutes } from './routes/openai-model-routes.ts';
import { registerOpenAiRoutes } from './routes/openai-routes.ts';
import { registerPolicyRoutes } from './routes/policy-routes.ts';
import { registerRunRoutes } from './routes/run-routes.ts';
import { registerRunStepRoutes } from './routes/run-step-routes.ts';
import { registerTenantRoutes } from './routes/tenant-routes.ts';
import { registerThreadRoutes } from './routes/thread-routes.ts';
import { registerToolImportRoutes } from './routes/tool-import-routes.ts';
import { registerToolRoutes } from './routes/tool-routes.ts';
import { registerTraceRoutes } from './routes/trace-routes.ts';
import { registerUsageRoutes } from './routes/usage-routes.ts';
import { registerUserRoutes } from './routes/user-routes.ts';
import { registerWebhookRoutes } from './routes/webhook-routes.ts';

/** Options for {@link createApp}. */
export interface CreateAppOptions {
  readonly services: RouteServices;
  readonly authenticator: Authenticator;
  readonly logger: ErrorLogger;
  readonly bodyLimitBytes: number;
  /** How often an open event stream authenticates its credential again (default 15 s). */
  readonly streamReauthMs?: number | undefined;
  readonly cors: {
    readonly origins: readonly string[];
    readonly credentials: boolean;
    readonly maxAgeSeconds: number;
  };
  /** Requests-per-minute limits for tenant users (the operator is not limited). */
  readonly limiter?: RequestLimiter | undefined;
  /** requestsPerMinute limits of the policies binding a user (cached; see policy-cache.ts). */
  readonly requestPolicies?:
    | ((principal: UserPrincipal) => Promise<readonly BindingLimit[]>)
    | undefined;
  /** Request spans (and the trace ids on log lines inside them). */
  readonly tracing?: Tracing | undefined;
  /** Lets webhooks target private and loopback addresses (tests, private deployments). */
  readonly webhooksAllowPrivateNetworks?: boolean | undefined;
  /** Readiness probe: resolves when the database answers; false while draining. */
  readonly isReady: () => Promise<boolean>;
  readonly version: string;
  /** Prometheus metrics and the bearer token (besides the operator key) that may read them. */
  readonly metrics?: { readonly registry: Metrics; readonly token: string | undefined } | undefined;
}

// `/metrics` authenticates itself (metrics token or operator key); the audit key is public.
const publicPaths = new Set([
  '/healthz',
  '/readyz',
  '/openapi.json',
  '/docs',
  '/v1/audit/public-key',
  metricsPath,
]);
const bodyMethods = new Set(['POST', 'PUT', 'PATCH']);

function hasBody(context: Context): boolean {
  const length = context.req.header('content-length');
  return (
    (length !== undefined && length !== '0') ||
    context.req.header('transfer-encoding') !== undefined
  );
}

/** Builds the HTTP app: middleware, every route, the OpenAPI document and the error handler. */
export function createApp(options: CreateAppOptions): BrigadeApp {
  const app: BrigadeApp = new OpenAPIHono<AppEnv>({
    defaultHook: (result, context) => {
      // A required body (every declared one: route-helpers' jsonBody) that was not sent:
      // without a Content-Type the validator checks `{}`, which an all-optional schema passes.
      if (result.target === 'json' && !hasBody(context))
        throw new AppError(
          'invalid_json',
          'This operation takes a JSON request body (application/json); none was sent.',
        );
      if (!result.success)
        throw toValidationError(result.target, result.error.issues as readonly ZodIssueLike[]);
    },
  });
  // The OpenAI-compatible paths answer with OpenAI error objects; everything else problem+json.
  const renderError = (context: Context, error: unknown) =>
    isOpenAiPath(context.req.path)
      ? renderOpenAiError(context, error, options.logger)
      : renderProblem(context, error, options.logger);
  app.onError(
    (error, context) =>
      answerClientGone(context, error, {
        logger: options.logger,
        render: () => renderError(context, error),
      }) ?? renderError(context, error),
  );
  // A path that exists under other methods is 405 with `Allow`, not 404 (RFC 9110 §15.5.6).
  let routeMethods: { pattern: RegExp; method: string }[] | undefined;
  app.notFound((context) => {
    const { method, path } = context.req;
    routeMethods ??= app.routes
      .filter((route) => route.method !== 'ALL' && !route.path.includes('*'))
      .map((route) => ({
        pattern: new RegExp(`^${route.path.replace(/:[^/]+/g, '[^/]+')}/?$`),
        method: route.method,
      }));
    const allowed = [
      ...new Set(routeMethods.filter((route) => route.pattern.test(path)).map((r) => r.method)),
    ];
    if (allowed.length === 0 || allowed.includes(method))
      return renderError(context, new AppError('not_found', `No route for ${method} ${path}.`));
    const response = renderError(
      context,
      new AppError(
        'method_not_allowed',
        `${method} is not allowed here; use ${allowed.join(', ')}.`,
      ),
    );
    response.headers.set('Allow', allowed.join(', '));
    return response;
  });

  if (options.metrics !== undefined) app.use('*', httpMetrics(options.metrics.registry));
  const requestId = assignRequestId();
  app.use('*', async (context, next) => {
    await requestId(context, next);
    // An error's problem+json is a new response, without the header set before it: every
    // response (and so every access-log line) carries the request id.
    if (!context.res.headers.has('x-request-id')) {
      try {
        context.res.headers.set('X-Request-Id', context.get('requestId'));
      } catch {
        // A response with immutable headers goes out without it.
      }
    }
  });
  if (options.tracing !== undefined) app.use('*', httpTracing(options.tracing));
  if (options.cors.origins.length > 0) app.use('*', createCors(options.cors));
  const tooLarge = () => {
    throw new AppError(
      'payload_too_large',
      `The request body exceeds ${options.bodyLimitBytes} bytes.`,
    );
  };
  const streamedBodyLimit = bodyLimit({ maxSize: options.bodyLimitBytes, onError: tooLarge });
  app.use('*', async (context, next) => {
    // A body with a Content-Length is checked by its header alone (Node's parser never reads
    // past it), so the route can read it straight from the socket: Hono's bodyLimit reads
    // `req.raw.body`, which makes @hono/node-server build a web Request and ReadableStream
    // for every request (~5 % of the gateway's CPU). Chunked bodies are counted as they stream.
    // A request with neither header has no body (RFC 9112 §6.3).
    if (context.req.header('transfer-encoding') === undefined) {
      const length = context.req.header('content-length');
      if (length !== undefined && Number.parseInt(length, 10) > options.bodyLimitBytes) tooLarge();
      return next();
    }
    return streamedBodyLimit(context, next);
  });
  app.use('*', async (context, next) => {
    if (bodyMethods.has(context.req.method) && hasBody(context)) {
      const [media, ...parameters] = (context.req.header('content-type') ?? '').split(';');
      const type = media?.trim().toLowerCase() ?? '';
      if (!/^application\/([\w.-]+\+)?json$/.test(type)) {
        throw new AppError('unsupported_media_type', 'Send the request body as application/json.');
      }
      // JSON is UTF-8 (RFC 8259 §8.1): a body declared in another charset would be misread.
      const charset = parameters
        .map((parameter) => /^\s*charset\s*=\s*"?([^";\s]*)"?\s*$/i.exec(parameter)?.[1])
        .find((value) => value !== undefined);
      // US-ASCII is a subset of UTF-8; an empty value says nothing.
      if (charset !== undefined && !/^(utf-?8|us-ascii|ascii|)$/i.test(charset)) {
        throw new AppError(
          'unsupported_media_type',
          `Send the request body as UTF-8 JSON (charset=${charset.slice(0, 40)} is not supported).`,
        );
      }
    }
    await next();
  });
  app.use('*', async (context, next) => {
    if (publicPaths.has(context.req.path)) return next();
    const header = context.req.header('authorization');
    const match = header === undefined ? null : /^Bearer ([\x21-\x7e]+)$/i.exec(header.trim());
    if (match?.[1] === undefined)
      throw new UnauthenticatedError(
        'Send an API key or token as "Authorization: Bearer <credential>".',
        // Another scheme (Basic...) carries nothing Brigade reads; a malformed Bearer is bad.
        { credentialPresented: header !== undefined && /^\s*bearer\b/i.test(header) },
      );
    const credential = match[1];
    const hint = { tenantId: context.req.header('x-brigade-tenant')?.trim() };
    const principal = await options.authenticator.authenticate(credential, hint);
    context.set('principal', principal);
    context.set('reauthentication', {
      everyMs: options.streamReauthMs ?? 15_000,
      check: () => options.authenticator.authenticate(credential, hint),
    });
    if (options.limiter !== undefined && principal.kind === 'user') {
      const policies = (await options.requestPolicies?.(principal)) ?? [];
      const decision = await options.limiter.consume(principal, policies);
      const headers = {
        'RateLimit-Policy': `${decision.limit};w=${options.limiter.windowSeconds}`,
        RateLimit: `limit=${decision.limit}, remaining=${decision.remaining}, reset=${decision.resetSeconds}`,
      };
      if (!decision.allowed) {
        options.metrics?.registry.recordRateLimitRejection(decision.scope ?? 'credential');
        const response = renderError(
          context,
          new AppError(
            'rate_limited',
            `Too many requests for this ${decision.scope ?? 'credential'}; retry in ${decision.resetSeconds} s.`,
            {
              details: {
                retryAfterSeconds: decision.resetSeconds,
                limitScope: decision.scope,
                ...(decision.policyId === undefined ? {} : { policyId: decision.policyId }),
              },
            },
          ),
        );
        for (const [name, value] of Object.entries(headers)) response.headers.set(name, value);
        return response;
      }
      await next();
      // A 429 from elsewhere (tokens per minute, concurrent model calls, a quota) is not this
      // limit's: its headers, with room left, would contradict the refusal.
      if (context.res.status === 429) return;
      try {
        for (const [name, value] of Object.entries(headers)) context.res.headers.set(name, value);
      } catch {
        // Some responses have immutable headers; the limit still applied.
      }
      return;
    }
    await next();
  });

  app.use('*', async (context, next) => {
    // After authentication: an anonymous request never gets its body read.
    if (
      !publicPaths.has(context.req.path) &&
      bodyMethods.has(context.req.method) &&
      hasBody(context)
    ) {
      const text = await readUtf8Body(context.req);
      assertShallowJson(text);
      assertStorableJson(text);
      assertFiniteNumbers(text);
    }
    await next();
  });

  app.get('/healthz', (context) => context.json({ status: 'ok', version: options.version }));
  app.get('/readyz', async (context) => {
    const ready = await options.isReady().catch(() => false);
    return context.json({ status: ready ? 'ready' : 'unavailable' }, ready ? 200 : 503);
  });

  registerMeRoutes(app, options.services);
  registerTenantRoutes(app, options.services);
  registerUserRoutes(app, options.services);
  registerKeyRoutes(app, options.services);
  registerOidcRoutes(app, options.services);
  registerAgentRoutes(app, options.services);
  registerThreadRoutes(app, options.services);
  registerRunRoutes(app, options.services);
  registerRunStepRoutes(app, options.services);
  registerApprovalRoutes(app, options.services);
  registerAuditRoutes(app, options.services);
  registerConsentRoutes(app, options.services);
  registerDataRightsRoutes(app, options.services, options.logger);
  registerMemoryRoutes(app, options.services);
  registerToolRoutes(app, options.services);
  registerToolImportRoutes(app, options.services);
  if (options.services.mcpServers !== undefined)
    registerMcpRoutes(app, options.services.mcpServers);
  registerCredentialRoutes(app, options.services);
  registerPolicyRoutes(app, options.services);
  registerModelRouteRoutes(app, options.services);
  registerTraceRoutes(app, options.services);
  registerWebhookRoutes(app, options.services, {
    allowPrivateNetworks: options.webhooksAllowPrivateNetworks ?? false,
  });
  registerUsageRoutes(app, options.services);
  registerOpenAiRoutes(app, options.services);
  registerOpenAiModelRoutes(app, options.services);

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearerAuth', {
    type: 'http',
    scheme: 'bearer',
    description:
      'A Brigade API key (`brg_…`), the operator key, or a JWT from a tenant’s OIDC provider.',
  });
  app.doc31('/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'Brigade API',
      version: options.version,
      description:
        'Multi-tenant harness for LLM agents. Errors are RFC 9457 problem+json documents with a stable `code`.',
    },
  });
  app.get('/docs', (context) => context.html(docsPage));
  if (options.metrics !== undefined)
    registerMetricsRoute(app, {
      metrics: options.metrics.registry,
      authenticator: options.authenticator,
      token: options.metrics.token,
    });
  return app;
}
