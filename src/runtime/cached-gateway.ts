import type { ModelGateway } from '../gateway/model-gateway.ts';
import {
  cacheKeyOf,
  cacheKeyPrefix,
  type ResponseCacheStore,
} from '../gateway/response-cache-store.ts';
import type { ModelResultV1 } from '../plugin-api/index.ts';
import type { BudgetStore, UsageEntry } from '../storage/guards/budget-store.ts';
import type { MeteredGateway, MeteredRequest } from './metered-gateway.ts';

/** What the response cache did for one call. */
export type CacheOutcome = 'hit' | 'miss' | 'bypass';

/** A metered call that may be answered from its route's response cache. */
export interface CacheableRequest extends MeteredRequest {
  /** `bypass`: neither read nor write the cache (the client sent `Cache-Control: no-cache`). */
  readonly cache?: 'bypass' | undefined;
  /** Told what the cache did; not called when the route has no cache. */
  readonly onCacheOutcome?: ((outcome: CacheOutcome) => void) | undefined;
}

/** The metered gateway with the response cache in front of it. */
export interface CachingGateway {
  generate(request: CacheableRequest): Promise<ModelResultV1>;
}

/** Options for {@link createCachingGateway}. */
export interface CachingGatewayOptions {
  readonly metered: MeteredGateway;
  /** Finds the route a call names, and with it the route's cache settings. */
  readonly gateway: Pick<ModelGateway, 'route'>;
  readonly store: ResponseCacheStore;
  /** Writes the usage record of a hit (no reservation: it costs nothing). */
  readonly budgets: Pick<BudgetStore, 'settle'>;
  readonly logger: { warn(object: object, message: string): void };
  readonly onUsage?: ((entry: UsageEntry) => void) | undefined;
}

/** What the cache holds for one answer. */
interface CachedResult {
  readonly result: ModelResultV1;
}

/** Finish reasons of answers worth caching: the call completed and said what it meant to. */
const cacheable = new Set<ModelResultV1['finishReason']>(['stop', 'length', 'tool-calls']);

/**
 * The opt-in response cache of model routes (issue 4 §3), for API calls only: a run's model
 * calls are checkpointed steps and are never answered from a cache. The key is the SHA-256 of
 * the tenant, the user (unless the route declares `scope: 'tenant'`), the route (its name, its
 * deployments and fallbacks) and the normalised request (messages, tools, output limit,
 * response format), so one user's answer is never served to another. A hit is replayed (as one delta when the caller streams), reserves
 * nothing, and is recorded as a usage record of provider `cache` with cost 0. Only answers that
 * completed are stored; a call that failed or was aborted stores nothing.
 */
export function createCachingGateway(options: CachingGatewayOptions): CachingGateway {
  return {
    async generate(request) {
      const route =
        request.source === 'api'
          ? await options.gateway.route(request.model, request.spender.tenantId)
          : undefined;
      const settings = route?.cache;
      if (settings === undefined) return options.metered.generate(request);
      if (request.cache === 'bypass') {
        request.onCacheOutcome?.('bypass');
        return options.metered.generate(request);
      }
      const user = settings.scope === 'tenant' ? null : request.spender.userId;
      const key = `${cacheKeyPrefix(request.spender.tenantId, user)}${cacheKeyOf({
        tenant: request.spender.tenantId,
        user,
        route: request.model,
        // What answers: a route changed to other models (or deleted and made anew, or a tenant
        // route shadowing a platform one) does not serve its old models' answers.
        models: { deployments: route?.deployments, fallbacks: route?.fallbacks },
        messages: request.messages,
        tools: request.tools,
        maxOutputTokens: request.maxOutputTokens,
        responseFormat: request.responseFormat ?? { type: 'text' },
        sampling: request.sampling ?? {},
        toolChoice: request.toolChoice ?? 'auto',
      })}`;
      const started = performance.now();
      const cached = await options.store.get(key).catch(() => undefined);
      if (cached !== undefined) {
        const { result } = JSON.parse(cached) as CachedResult;
        request.onCacheOutcome?.('hit');
        if (request.stream !== false && result.text.length > 0) request.onTextDelta?.(result.text);
        const entry: UsageEntry = {
          source: 'api',
          route: request.model,
          provider: 'cache',
          model: request.model,
          inputTokens: result.usage.inputTokens,
          outputTokens: result.usage.outputTokens,
          estimated: result.usage.estimated,
          cost: 0,
          latencyMs: performance.now() - started,
          ttftMs: null,
          status: 'ok',
        };
        options.onUsage?.(entry);
        await options.budgets.settle(request.spender, { id: undefined, amount: 0 }, { entry });
        return result;
      }
      request.onCacheOutcome?.('miss');
      const result = await options.metered.generate(request);
      if (cacheable.has(result.finishReason)) {
        const stored: CachedResult = {
          result: {
            text: result.text,
            toolCalls: result.toolCalls,
            finishReason: result.finishReason,
            usage: result.usage,
          },
        };
        await options.store
          .set(key, JSON.stringify(stored), settings.ttlSeconds)
          .catch((error: unknown) =>
            options.logger.warn(
              { err: { message: (error as Error).message } },
              'response cache write failed',
            ),
          );
      }
      return result;
    },
  };
}
