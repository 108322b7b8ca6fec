import type { LanguageModel } from 'ai';
import { AppError } from '../domain/errors.ts';
import type { MessageV1, ModelResultV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { createLanguageModel, generateWithAiSdk, type ProviderConfig } from './ai-sdk-model.ts';
import { fitsContext, type PromptSize, promptTokensOn, windowOf } from './context-fit.ts';
import { generateLocal } from './local-model.ts';
import { createLruMap } from './lru-map.ts';
import { type BreakerSample, createModelRouter, type DeploymentCall } from './model-router.ts';
import {
  isRouteName,
  type ModelRouteDefinition,
  type RouteDeployment,
  routeDefaults,
} from './model-routes.ts';
import { createOpenAIChatCaller, type OpenAIChatCaller } from './openai-chat.ts';
import type { RouteAttempt } from './route-failures.ts';

/** One model call as the runtime asks for it. */
export interface GatewayRequest {
  /** `local` (the built-in model), `<provider>:<model id>`, or a model route's name. */
  readonly model: string;
  readonly messages: readonly MessageV1[];
  readonly tools: readonly ToolDescriptionV1[];
  readonly maxOutputTokens: number;
  readonly signal: AbortSignal;
  readonly onTextDelta?: ((delta: string) => void) | undefined;
  /**
   * Told the deployment's model (`local` or `<provider>:<model>`) as each attempt calls it: a
   * call cut off by its signal ends with no result or attempts to say what it was reading.
   */
  readonly onAttempt?: ((model: string) => void) | undefined;
  /** The tenant whose model routes apply (they shadow platform routes of the same name). */
  readonly tenantId?: string | undefined;
  /** The caller's deadline; a route's own deadline applies too. */
  readonly deadline?: Date | undefined;
  /**
   * False when the caller needs only the finished result (a non-streaming API call): providers
   * are then called without streaming, which costs far less CPU. Default true.
   */
  readonly stream?: boolean | undefined;
  /** Structured output: plain text (default) or a JSON object, optionally matching a schema. */
  readonly responseFormat?: ResponseFormat | undefined;
  /** Sampling settings for the provider (absent ones are the provider's defaults). */
  readonly sampling?: Sampling | undefined;
  /** Whether the model must call a tool (absent: it decides). */
  readonly toolChoice?: ToolChoice | undefined;
  /**
   * The prompt's size (context-fit.ts), its token counts made where its byte bound did not
   * settle a deployment's window: deployments that cannot hold it are skipped, so a prompt
   * goes to a fallback it fits, not to a model bound to refuse it (and perhaps charge for it).
   * Its counts also serve a provider's missing usage. Absent: no deployment is skipped.
   */
  readonly promptSize?: PromptSize | undefined;
  /**
   * True when `maxOutputTokens` is Brigade's default rather than the caller's limit (an API
   * call that set none): a deployment whose context window is known is then asked for no more
   * than the prompt leaves of it by `promptSize` (see {@link outputTokensFor}).
   */
  readonly fitOutputToContext?: boolean | undefined;
}

/**
 * Sampling settings, passed to the provider as given (OpenAI's `temperature`, `top_p`, `stop`,
 * `seed`, `presence_penalty`, `frequency_penalty`). The built-in local model is deterministic:
 * it honours only `stop`.
 */
export interface Sampling {
  readonly temperature?: number | undefined;
  readonly topP?: number | undefined;
  /** Up to four sequences; the answer ends before the first one. */
  readonly stop?: readonly string[] | undefined;
  readonly seed?: number | undefined;
  readonly presencePenalty?: number | undefined;
  readonly frequencyPenalty?: number | undefined;
}

/** The model must call some tool (`required`), or the one named (one of the request's tools). */
export type ToolChoice = 'required' | { readonly toolName: string };

/** What shape of answer a call asks for (OpenAI's `response_format`). */
export type ResponseFormat =
  | { readonly type: 'text' }
  | {
      readonly type: 'json';
      /** A JSON Schema the object should match (`json_schema`); absent for `json_object`. */
      readonly schema?: Readonly<Record<string, unknown>> | undefined;
      readonly name?: string | undefined;
      readonly description?: string | undefined;
      /** OpenAI's `strict` schema adherence (default false, as in OpenAI's API). */
      readonly strict?: boolean | undefined;
    };

/** A model call's result, and what served it. */
export interface GatewayResult extends ModelResultV1 {
  readonly served: {
    /** The route that answered (null for a direct `local` call). */
    readonly route: string | null;
    /** The deployment's model that answered. */
    readonly model: string;
    readonly attempts: readonly RouteAttempt[];
  };
}

/** Every model call passes the gateway (DESIGN.md invariant 5). */
export interface ModelGateway {
  /** True when `model` is `local`, a configured provider's model or a platform route. */
  knows(model: string): boolean;
  /** As {@link knows}, with the tenant's own routes. */
  knowsFor(model: string, tenantId: string): Promise<boolean>;
  /** Model names this gateway can call, for error messages and listings. */
  describe(): readonly string[];
  /**
   * Every deployment a call to `model` may end up on (its route's and its fallbacks'), so a
   * budget can reserve the most expensive; empty when `model` names nothing.
   */
  deployments(model: string, tenantId: string | undefined): Promise<readonly RouteDeployment[]>;
  /** The route `model` names for the tenant (its own shadowing the platform's), if any. */
  route(model: string, tenantId: string | undefined): Promise<ModelRouteDefinition | undefined>;
  generate(request: GatewayRequest): Promise<GatewayResult>;
  /** The state of every breaker of this process, with its deployment (no tenant): metrics. */
  breakerStates(): readonly BreakerSample[];
}

/** Options for {@link createModelGateway}. */
export interface ModelGatewayOptions {
  /** Delay between tokens of the local model, in milliseconds. */
  readonly localTokenDelayMs: number;
  /** Configured providers by name (keys already resolved from the environment). */
  readonly providers: Readonly<Record<string, ProviderConfig>>;
  /** Routes from the config file, for every tenant. */
  readonly platformRoutes?: readonly ModelRouteDefinition[] | undefined;
  /** A tenant's own routes (cached by the caller). */
  readonly tenantRoutes?:
    | ((tenantId: string) => Promise<readonly ModelRouteDefinition[]>)
    | undefined;
  /** Creates the AI SDK model of a provider's model (tests); default `createLanguageModel`. */
  readonly languageModel?: typeof createLanguageModel | undefined;
}

/**
 * AI SDK models kept per process. The model id is the caller's (any `<provider>:<anything>`
 * of up to 300 characters, from any member), so keeping one per distinct name ever asked for
 * grew the heap by ~6 KB a name; a model object is cheap to create again.
 */
const maxCachedModels = 256;

function split(model: string): { provider: string; modelId: string } | undefined {
  const index = model.indexOf(':');
  if (index <= 0 || index === model.length - 1) return undefined;
  return { provider: model.slice(0, index), modelId: model.slice(index + 1) };
}

/**
 * The model gateway: the built-in `local` model, every configured provider through the Vercel
 * AI SDK, and model routes (platform routes from the config file, tenant routes over the
 * API) with retries, breakers, cooldowns and fallbacks (model-router.ts). A direct
 * `<provider>:<model>` call is an implicit route of one deployment with the default
 * resilience settings, so it is retried and breaker-guarded too.
 */
export function createModelGateway(options: ModelGatewayOptions): ModelGateway {
  const models = createLruMap<LanguageModel>(maxCachedModels);
  const newLanguageModel = options.languageModel ?? createLanguageModel;
  const platform = new Map((options.platformRoutes ?? []).map((route) => [route.name, route]));
  function languageModel(model: string): LanguageModel {
    const cached = models.get(model);
    if (cached !== undefined) return cached;
    const parts = split(model);
    const provider = parts === undefined ? undefined : options.providers[parts.provider];
    if (parts === undefined || provider === undefined) {
      throw new AppError('unknown_model', `No model route or provider named '${model}'.`);
    }
    return models.set(model, newLanguageModel(parts.provider, provider, parts.modelId));
  }
  function direct(model: string): boolean {
    if (model === 'local') return true;
    const parts = split(model);
    return parts !== undefined && options.providers[parts.provider] !== undefined;
  }
  async function findRoute(
    name: string,
    tenantId: string | undefined,
  ): Promise<ModelRouteDefinition | undefined> {
    if (!isRouteName(name)) return undefined;
    if (tenantId !== undefined && options.tenantRoutes !== undefined) {
      const own = (await options.tenantRoutes(tenantId)).find((route) => route.name === name);
      if (own !== undefined) return own;
    }
    return platform.get(name);
  }
  const directCallers = new Map<string, OpenAIChatCaller>();
  /**
   * The direct (AI-SDK-free) caller of an OpenAI-compatible provider's model, streaming or not;
   * undefined for other providers (OpenAI and Anthropic go through the AI SDK).
   */
  function directCaller(model: string): { call: OpenAIChatCaller; modelId: string } | undefined {
    const parts = split(model);
    const provider = parts === undefined ? undefined : options.providers[parts.provider];
    if (parts === undefined || provider?.type !== 'openai-compatible') return undefined;
    let call = directCallers.get(parts.provider);
    if (call === undefined) {
      call = createOpenAIChatCaller(provider);
      directCallers.set(parts.provider, call);
    }
    return { call, modelId: parts.modelId };
  }
  const router = createModelRouter({});
  /** Calls one deployment with `request`'s messages, under the router's attempt signal. */
  function callerFor(request: GatewayRequest): DeploymentCall {
    return (deployment, signal, output) => {
      const { model } = deployment;
      const maxOutputTokens = outputTokensFor(request, deployment);
      // A non-streaming call (stream: false) gets neither: it shows no output before it ends.
      const onTextDelta = request.stream === false ? undefined : output.onTextDelta;
      const onProgress = request.stream === false ? undefined : output.onProgress;
      const direct = directCaller(model);
      if (direct !== undefined)
        return direct.call({
          modelId: direct.modelId,
          messages: request.messages,
          tools: request.tools,
          maxOutputTokens,
          signal,
          onTextDelta,
          onProgress,
          responseFormat: request.responseFormat,
          sampling: request.sampling,
          toolChoice: request.toolChoice,
          promptTokens: request.promptSize?.tokens,
        });
      return model === 'local'
        ? generateLocal({
            messages: request.messages,
            tools: request.tools,
            maxOutputTokens,
            signal,
            // As for providers: a non-streaming call shows no output before it ends, so one
            // aborted meanwhile is released at no cost rather than charged as if output began.
            onTextDelta,
            tokenDelayMs: options.localTokenDelayMs,
            responseFormat: request.responseFormat,
            sampling: request.sampling,
            toolChoice: request.toolChoice,
          })
        : generateWithAiSdk({
            model: languageModel(model),
            messages: request.messages,
            tools: request.tools,
            maxOutputTokens,
            signal,
            onTextDelta,
            onProgress,
            responseFormat: request.responseFormat,
            sampling: request.sampling,
            toolChoice: request.toolChoice,
            promptTokens: request.promptSize?.tokens,
          });
    };
  }
  return {
    knows: (model) => direct(model) || (isRouteName(model) && platform.has(model)),
    async knowsFor(model, tenantId) {
      return direct(model) || (await findRoute(model, tenantId)) !== undefined;
    },
    describe: () => [
      'local',
      ...Object.keys(options.providers).map((name) => `${name}:<model>`),
      ...platform.keys(),
    ],
    route: (model, tenantId) => findRoute(model, tenantId),
    async deployments(model, tenantId) {
      if (direct(model)) return [{ model }];
      const seen = new Set<string>();
      const found: RouteDeployment[] = [];
      const visit = async (name: string, depth: number) => {
        if (seen.has(name) || depth > 5) return;
        seen.add(name);
        const route = await findRoute(name, tenantId);
        if (route === undefined) return;
        found.push(...route.deployments);
        for (const fallback of route.fallbacks) await visit(fallback.route, depth + 1);
      };
      await visit(model, 0);
      return found;
    },
    async generate(request) {
      const call = callerFor(request);
      if (request.model === 'local') {
        request.onAttempt?.('local');
        const result = await call({ model: 'local' }, request.signal, {
          onTextDelta: (delta) => request.onTextDelta?.(delta),
          onProgress: () => undefined,
        });
        return { ...result, served: { route: null, model: 'local', attempts: [] } };
      }
      const route = direct(request.model)
        ? implicitRoute(request.model)
        : await findRoute(request.model, request.tenantId);
      if (route === undefined)
        throw new AppError('unknown_model', `No model route or provider named '${request.model}'.`);
      const size = request.promptSize;
      const routed = await router.generate(route, {
        signal: request.signal,
        deadline: request.deadline,
        onTextDelta: request.onTextDelta,
        // Breakers per tenant (direct calls included: one tenant's failing prompts must not
        // open a breaker every tenant shares); caps and cooldowns per deployment of a platform
        // route or a direct model, for every tenant together.
        scope: request.tenantId ?? 'platform',
        sharesCapacity: (candidate) =>
          direct(candidate.name) || platform.get(candidate.name) === candidate,
        call,
        onAttempt: request.onAttempt,
        resolve: (name) => findRoute(name, request.tenantId),
        fits: size === undefined ? undefined : (deployment) => fitsContext(size, deployment),
      });
      return {
        ...routed.result,
        served: { route: routed.route, model: routed.model, attempts: routed.attempts },
      };
    },
    breakerStates: () => router.breakerStates(),
  };
}

/** A direct `<provider>:<model>` call: a route of one deployment with default resilience. */
function implicitRoute(model: string): ModelRouteDefinition {
  return { name: model, deployments: [{ model }], ...routeDefaults } as ModelRouteDefinition;
}

/** The least output a fitted call asks for: a prompt leaving less is left to the provider to refuse. */
const minimumFittedOutput = 256;

/**
 * The output limit sent to `deployment`: the request's, or — when it is only a default and the
 * deployment's context window is known — what the prompt leaves of that window by its token
 * count (erring high: `promptTokensOn`), at least {@link minimumFittedOutput}. Servers of small
 * models (vLLM, llama.cpp) refuse a prompt whose tokens plus `max_tokens` exceed their
 * context; a limit the caller chose is sent as chosen. The budget's reservation still assumes
 * the request's (larger) limit.
 */
export function outputTokensFor(request: GatewayRequest, deployment: RouteDeployment): number {
  const size = request.promptSize;
  if (request.fitOutputToContext !== true || size === undefined) return request.maxOutputTokens;
  const window = windowOf(deployment);
  if (window === undefined) return request.maxOutputTokens;
  const prompt = promptTokensOn(size, deployment);
  return Math.min(request.maxOutputTokens, Math.max(minimumFittedOutput, window - prompt));
}
