import type { RouteDeployment } from './model-routes.ts';
import { contextWindowOf } from './pricing.ts';
import { approximateCountMargin, type PromptTokens, tokenizerOf } from './token-count.ts';

/**
 * What the gateway knows of a prompt's size: a byte bound that settles most calls for free,
 * and its token counts, made only where the bound does not settle one (see
 * {@link countWhereNeeded}).
 */
export interface PromptSize {
  /**
   * An upper bound of its tokens in any encoding: UTF-8 bytes plus overheads (`measureInput`'s
   * `bound`; a byte-level tokenizer makes at most one token of a byte).
   */
  readonly bound: number;
  readonly tokens: PromptTokens;
}

/** The context window of a deployment: its `contextTokens`, else the built-in table's, if any. */
export function windowOf(deployment: RouteDeployment): number | undefined {
  return deployment.contextTokens ?? contextWindowOf(deployment.model);
}

/**
 * Counts the prompt's tokens in the encoding of every deployment whose known window its byte
 * bound (plus `outputTokens` of room for the answer, when the output is to be fitted) exceeds:
 * only there does the count decide anything. Most calls need none (a prompt of a few
 * kilobytes against a window of 128k tokens); each encoding is counted at most once.
 */
export async function countWhereNeeded(
  size: PromptSize,
  deployments: readonly RouteDeployment[],
  outputTokens: number,
): Promise<void> {
  const counts = new Set<Promise<number>>();
  for (const deployment of deployments) {
    const window = windowOf(deployment);
    if (window !== undefined && size.bound + outputTokens > window)
      counts.add(size.tokens.count(tokenizerOf(deployment.model).encoding));
  }
  await Promise.all(counts);
}

/**
 * Whether `deployment` can hold the prompt. Yes when its window is unknown or the byte bound
 * fits it; otherwise by the token count: over the window for an OpenAI family counted with its
 * own encoding, over the window by more than {@link approximateCountMargin} for any other
 * model (its own tokenizer may need fewer tokens). Yes when no count was made
 * ({@link countWhereNeeded}): the provider then decides, and its context error falls over.
 */
export function fitsContext(size: PromptSize, deployment: RouteDeployment): boolean {
  const window = windowOf(deployment);
  if (window === undefined || size.bound <= window) return true;
  const tokenizer = tokenizerOf(deployment.model);
  const tokens = size.tokens.counted(tokenizer.encoding);
  if (tokens === undefined) return true;
  return tokens <= (tokenizer.exact ? window : Math.floor(window * (1 + approximateCountMargin)));
}

/**
 * The prompt's size in tokens on `deployment`, erring high, for fitting the answer into what it
 * leaves of the window: the count (for a model counted approximately, plus
 * {@link approximateCountMargin}), or the byte bound where no count was needed.
 */
export function promptTokensOn(size: PromptSize, deployment: RouteDeployment): number {
  const tokenizer = tokenizerOf(deployment.model);
  const tokens = size.tokens.counted(tokenizer.encoding);
  if (tokens === undefined) return size.bound;
  return tokenizer.exact ? tokens : Math.ceil(tokens * (1 + approximateCountMargin));
}
