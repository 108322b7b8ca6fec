import type { MessageV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { createLruMap } from './lru-map.ts';

/** A model's price in USD per million tokens. */
export interface ModelPrice {
  readonly inputPerMTok: number;
  readonly outputPerMTok: number;
  readonly cachedInputPerMTok?: number | undefined;
}

/**
 * Built-in list prices (USD per million tokens) of widely used models, matched by
 * {@link keyCovers}, so dated variants (`gpt-4o-2024-08-06`) find their family. The
 * built-in `local` model has a nominal price so budgets can be tried out without a provider.
 * Operators override or extend this table with `models.prices`.
 */
export const defaultPrices: Readonly<Record<string, ModelPrice>> = {
  local: { inputPerMTok: 1, outputPerMTok: 2 },
  'gpt-5': { inputPerMTok: 1.25, outputPerMTok: 10, cachedInputPerMTok: 0.125 },
  'gpt-5-mini': { inputPerMTok: 0.25, outputPerMTok: 2, cachedInputPerMTok: 0.025 },
  'gpt-5-nano': { inputPerMTok: 0.05, outputPerMTok: 0.4, cachedInputPerMTok: 0.005 },
  'gpt-4.1': { inputPerMTok: 2, outputPerMTok: 8, cachedInputPerMTok: 0.5 },
  'gpt-4.1-mini': { inputPerMTok: 0.4, outputPerMTok: 1.6, cachedInputPerMTok: 0.1 },
  'gpt-4.1-nano': { inputPerMTok: 0.1, outputPerMTok: 0.4, cachedInputPerMTok: 0.025 },
  'gpt-4o': { inputPerMTok: 2.5, outputPerMTok: 10, cachedInputPerMTok: 1.25 },
  'gpt-4o-mini': { inputPerMTok: 0.15, outputPerMTok: 0.6, cachedInputPerMTok: 0.075 },
  'gpt-5-pro': { inputPerMTok: 15, outputPerMTok: 120 },
  'gpt-4o-2024-05-13': { inputPerMTok: 5, outputPerMTok: 15 },
  'gpt-4-turbo': { inputPerMTok: 10, outputPerMTok: 30 },
  'gpt-4': { inputPerMTok: 30, outputPerMTok: 60 },
  'gpt-3.5-turbo': { inputPerMTok: 0.5, outputPerMTok: 1.5 },
  o1: { inputPerMTok: 15, outputPerMTok: 60, cachedInputPerMTok: 7.5 },
  'o1-pro': { inputPerMTok: 150, outputPerMTok: 600 },
  'o1-preview': { inputPerMTok: 15, outputPerMTok: 60, cachedInputPerMTok: 7.5 },
  'o1-mini': { inputPerMTok: 1.1, outputPerMTok: 4.4, cachedInputPerMTok: 0.55 },
  o3: { inputPerMTok: 2, outputPerMTok: 8, cachedInputPerMTok: 0.5 },
  'o3-pro': { inputPerMTok: 20, outputPerMTok: 80 },
  'o3-mini': { inputPerMTok: 1.1, outputPerMTok: 4.4, cachedInputPerMTok: 0.55 },
  'o3-deep-research': { inputPerMTok: 10, outputPerMTok: 40, cachedInputPerMTok: 2.5 },
  'o4-mini-deep-research': { inputPerMTok: 2, outputPerMTok: 8, cachedInputPerMTok: 0.5 },
  'o4-mini': { inputPerMTok: 1.1, outputPerMTok: 4.4, cachedInputPerMTok: 0.275 },
  'claude-opus-4': { inputPerMTok: 15, outputPerMTok: 75, cachedInputPerMTok: 1.5 },
  'claude-sonnet-4': { inputPerMTok: 3, outputPerMTok: 15, cachedInputPerMTok: 0.3 },
  'claude-3-7-sonnet': { inputPerMTok: 3, outputPerMTok: 15, cachedInputPerMTok: 0.3 },
  'claude-3-5-sonnet': { inputPerMTok: 3, outputPerMTok: 15, cachedInputPerMTok: 0.3 },
  'claude-haiku-4-5': { inputPerMTok: 1, outputPerMTok: 5, cachedInputPerMTok: 0.1 },
  'claude-3-5-haiku': { inputPerMTok: 0.8, outputPerMTok: 4, cachedInputPerMTok: 0.08 },
  'claude-3-opus': { inputPerMTok: 15, outputPerMTok: 75, cachedInputPerMTok: 1.5 },
  'claude-3-haiku': { inputPerMTok: 0.25, outputPerMTok: 1.25, cachedInputPerMTok: 0.03 },
};

/**
 * Context windows (tokens) of widely used models, matched like prices. A deployment's
 * `contextTokens` overrides it; a model in neither has no known window and is never refused.
 */
export const defaultContextWindows: Readonly<Record<string, number>> = {
  local: 131_072,
  'gpt-5': 400_000,
  'gpt-5-mini': 400_000,
  'gpt-5-nano': 400_000,
  'gpt-4.1': 1_047_576,
  'gpt-4.1-mini': 1_047_576,
  'gpt-4.1-nano': 1_047_576,
  'gpt-4o': 128_000,
  'gpt-4o-mini': 128_000,
  'gpt-5-pro': 400_000,
  'gpt-4o-2024-05-13': 128_000,
  'gpt-4-turbo': 128_000,
  'gpt-4': 8_192,
  'gpt-3.5-turbo': 16_385,
  o1: 200_000,
  'o1-pro': 200_000,
  'o1-preview': 128_000,
  'o1-mini': 128_000,
  o3: 200_000,
  'o3-pro': 200_000,
  'o3-mini': 200_000,
  'o3-deep-research': 200_000,
  'o4-mini-deep-research': 200_000,
  'o4-mini': 200_000,
  'claude-opus-4': 200_000,
  'claude-sonnet-4': 200_000,
  'claude-3-7-sonnet': 200_000,
  'claude-3-5-sonnet': 200_000,
  'claude-haiku-4-5': 200_000,
  'claude-3-5-haiku': 200_000,
  'claude-3-opus': 200_000,
  'claude-3-haiku': 200_000,
};

/**
 * Whether a table `key` covers the model id `id`: the same id; a dated or pinned variant of it
 * (`gpt-4o-2024-08-06`, `claude-sonnet-4-20250514`, `…-latest`: the key, `-`, then a digit or
 * `latest`); or any id it begins, when the key itself ends in `:`, `/` or `-` (`"vllm:"`,
 * `"meta-llama/"`: an operator's explicit prefix). Not a mere prefix: `o3-pro` is not `o3`,
 * `gpt-5-pro` not `gpt-5` (both cost many times more), and provider `localai:` is not `local`.
 */
export function keyCovers(key: string, id: string): boolean {
  if (id === key) return true;
  if (!id.startsWith(key)) return false;
  if (/[:/-]$/.test(key)) return true;
  const rest = id.slice(key.length);
  return /^-(\d|latest$)/.test(rest);
}

/** The most specific key of `keys` (sorted longest first) covering `model` or its bare id. */
function findKey(keys: readonly string[], model: string): string | undefined {
  const bare = model.includes(':') ? model.slice(model.indexOf(':') + 1) : model;
  return (
    keys.find((candidate) => keyCovers(candidate, model)) ??
    keys.find((candidate) => keyCovers(candidate, bare))
  );
}

const windowKeys = Object.keys(defaultContextWindows).sort((a, b) => b.length - a.length);

/** The context window of `model`, when known (matched like prices, {@link keyCovers}). */
export function contextWindowOf(model: string): number | undefined {
  const key = findKey(windowKeys, model);
  return key === undefined ? undefined : defaultContextWindows[key];
}

/** What a request's input measures in bytes: the budget's worst case, the context check's first test. */
export interface InputMeasure {
  /**
   * A rough low estimate of its input tokens for `tokensPerMinute`'s count at a call's start:
   * one token per 8 UTF-8 bytes of the messages' content. Not a bound (a run of spaces is up to
   * 128 bytes a token), so no prompt is refused by it; the context check counts tokens.
   */
  readonly floor: number;
  /**
   * An upper bound of its input tokens: UTF-8 bytes (no tokenizer produces more tokens than
   * bytes for text) plus a per-message and per-tool overhead. A prompt whose bound fits a
   * context window needs no tokenizer.
   */
  readonly bound: number;
}

/**
 * Measures a request's input once: each message's content, each tool and the response format
 * (a JSON schema, its name and description: the provider reads all of it as input), as JSON.
 * `extra` is everything else the provider is sent as input besides the messages.
 */
export function measureInput(
  messages: readonly MessageV1[],
  extra: { readonly tools: readonly ToolDescriptionV1[]; readonly responseFormat?: unknown },
): InputMeasure {
  let contentBytes = 0;
  for (const message of messages)
    contentBytes += Buffer.byteLength(JSON.stringify(message.content));
  let toolBytes = 0;
  for (const tool of extra.tools) toolBytes += Buffer.byteLength(JSON.stringify(tool)) + 8;
  const formatBytes =
    extra.responseFormat === undefined
      ? 0
      : Buffer.byteLength(JSON.stringify(extra.responseFormat)) + 8;
  return {
    floor: Math.floor(contentBytes / 8),
    bound: contentBytes + 8 * messages.length + toolBytes + formatBytes + 16,
  };
}

/** Token counts of one call. */
export interface TokenCounts {
  readonly inputTokens: number;
  readonly outputTokens: number;
  readonly cachedInputTokens?: number | undefined;
}

/** Prices model calls in integer nano-USD. */
export interface PriceTable {
  priceOf(model: string): ModelPrice;
  /** Cost of a call in nano-USD (rounded up: never under-charges); `price` overrides the table. */
  cost(model: string, tokens: TokenCounts, price?: ModelPrice): number;
  /**
   * The most a call can cost, in nano-USD: its input's upper bound (`measureInput`) plus
   * `maxOutputTokens`.
   */
  worstCase(
    model: string,
    request: { readonly input: InputMeasure; readonly maxOutputTokens: number },
    price?: ModelPrice,
  ): number;
}

/** Creates the {@link PriceTable}: configured prices first, then the defaults. */
export function createPriceTable(options: {
  readonly prices: Readonly<Record<string, ModelPrice>>;
  readonly unknownModelPrice: ModelPrice;
  /** Platform routes: a deployment's `price` prices its model however it is reached. */
  readonly platformRoutes?: readonly {
    readonly deployments: readonly {
      readonly model: string;
      readonly price?: ModelPrice | undefined;
    }[];
  }[];
}): PriceTable {
  const table = withDeploymentPrices(
    { ...defaultPrices, ...options.prices },
    options.platformRoutes ?? [],
  );
  const keys = Object.keys(table).sort((a, b) => b.length - a.length);
  // Keyed by model names callers choose (`<provider>:<anything>`): bounded, not one per name.
  const cache = createLruMap<ModelPrice>(1_000);
  function priceOf(model: string): ModelPrice {
    const cached = cache.get(model);
    if (cached !== undefined) return cached;
    const key = findKey(keys, model);
    const price = key === undefined ? options.unknownModelPrice : (table[key] as ModelPrice);
    return cache.set(model, price);
  }
  // tokens × USD per million tokens × 1000 = nano-USD; rounding to pico-USD first removes
  // binary floating-point noise (0.15 × 1000 is 150.00000000000003) before rounding up.
  const nanos = (tokens: number, perMTok: number) =>
    Math.ceil(Math.round(tokens * perMTok * 1_000_000) / 1000);
  function cost(model: string, tokens: TokenCounts, override?: ModelPrice): number {
    const price = override ?? priceOf(model);
    const cached = Math.min(tokens.cachedInputTokens ?? 0, tokens.inputTokens);
    return (
      nanos(tokens.inputTokens - cached, price.inputPerMTok) +
      nanos(cached, price.cachedInputPerMTok ?? price.inputPerMTok) +
      nanos(tokens.outputTokens, price.outputPerMTok)
    );
  }
  return {
    priceOf,
    cost,
    worstCase(model, request, override) {
      const price = override ?? priceOf(model);
      return (
        nanos(request.input.bound, price.inputPerMTok) +
        nanos(request.maxOutputTokens, price.outputPerMTok)
      );
    },
  };
}

/** The dearer of two prices, field by field (a missing cached price is the input price). */
function dearer(left: ModelPrice, right: ModelPrice): ModelPrice {
  return {
    inputPerMTok: Math.max(left.inputPerMTok, right.inputPerMTok),
    outputPerMTok: Math.max(left.outputPerMTok, right.outputPerMTok),
    cachedInputPerMTok: Math.max(
      left.cachedInputPerMTok ?? left.inputPerMTok,
      right.cachedInputPerMTok ?? right.inputPerMTok,
    ),
  };
}

/**
 * The table with the operator's per-deployment prices of platform routes added under their
 * model's id (`<provider>:<model>`), so a direct call of that model, or a tenant route to it
 * (tenant routes carry no price), costs what the operator set: otherwise a tenant could shadow
 * the platform route with its own route to the same deployment and pay the table's price.
 * Where several prices name one model (two routes, or the table's exact entry too), the dearer
 * applies, field by field, so no way of reaching the model is cheaper than another.
 */
function withDeploymentPrices(
  table: Record<string, ModelPrice>,
  routes: NonNullable<Parameters<typeof createPriceTable>[0]['platformRoutes']>,
): Record<string, ModelPrice> {
  const merged = { ...table };
  for (const route of routes)
    for (const deployment of route.deployments) {
      if (deployment.price === undefined) continue;
      const known = merged[deployment.model];
      merged[deployment.model] =
        known === undefined ? deployment.price : dearer(known, deployment.price);
    }
  return merged;
}
