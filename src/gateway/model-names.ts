import { defaultPrices } from './pricing.ts';

/**
 * The model and provider names the operator configured, for labels and span names. Callers
 * choose model names (`<provider>:<anything>` on `/v1/chat/completions`, an agent's or a
 * tenant route's model), so a name is used as a metric label only when the configuration
 * knows it; any other becomes `<provider>:other` (or `other`), and no caller's string ever
 * becomes a label.
 */
export interface ModelNames {
  /** Whether the configuration names this model or platform route (see {@link createModelNames}). */
  isConfigured(model: string): boolean;
  /** The model's label: the name itself when configured, else `<provider>:other` or `other`. */
  modelLabel(model: string): string;
  /** The provider's label: a configured provider or `local`, else `other`. */
  providerLabel(provider: string): string;
}

/** What {@link createModelNames} reads of the configuration. */
export interface ModelNameSources {
  /** Configured providers by name. */
  readonly providers: Readonly<Record<string, unknown>>;
  /** Platform routes: their names and their deployments' models. */
  readonly routes: readonly {
    readonly name: string;
    readonly deployments: readonly { readonly model: string }[];
  }[];
  /** `models.prices`: its keys (added to the built-in price table's). */
  readonly models: { readonly prices: Readonly<Record<string, unknown>> };
}

/** A dated or pinned variant of a price table's model: `-20250514`, `-2024-08-06`, `-latest`. */
const variantPattern = /^-(\d{4}-\d{2}-\d{2}|\d{4,8}|latest)$/;

/**
 * Creates the {@link ModelNames} of a configuration. Configured are: `local`, every platform
 * route's name and deployment model, and the price table's models (built-in and
 * `models.prices`) — as written, with a configured provider in front of a bare id
 * (`openai:gpt-4o`), and their dated variants (`anthropic:claude-sonnet-4-20250514`). A price
 * key that covers a whole prefix (`vllm:`) names no model. The set is fixed at start-up, so
 * labels are bounded by the configuration and no tenant's calls can crowd out another's.
 */
export function createModelNames(sources: ModelNameSources): ModelNames {
  const providers = new Set(['local', ...Object.keys(sources.providers)]);
  const exact = new Set<string>(['local']);
  for (const route of sources.routes) {
    exact.add(route.name);
    for (const deployment of route.deployments) exact.add(deployment.model);
  }
  const priced = [...Object.keys(defaultPrices), ...Object.keys(sources.models.prices)].filter(
    (key) => !/[:/-]$/.test(key),
  );
  const bareIds = new Set(priced.filter((key) => !key.includes(':')));
  for (const key of priced) if (key.includes(':')) exact.add(key);
  const isPricedId = (id: string): boolean => {
    if (bareIds.has(id)) return true;
    if (id.length > 200) return false;
    for (let at = id.indexOf('-'); at > 0; at = id.indexOf('-', at + 1))
      if (variantPattern.test(id.slice(at)) && bareIds.has(id.slice(0, at))) return true;
    return false;
  };
  const isConfigured = (model: string): boolean => {
    if (exact.has(model)) return true;
    const colon = model.indexOf(':');
    if (colon <= 0) return false;
    const provider = model.slice(0, colon);
    const id = model.slice(colon + 1);
    return providers.has(provider) && provider !== 'local' && isPricedId(id);
  };
  return {
    isConfigured,
    modelLabel(model) {
      if (isConfigured(model)) return model;
      const colon = model.indexOf(':');
      const provider = colon <= 0 ? undefined : model.slice(0, colon);
      return provider !== undefined && providers.has(provider) ? `${provider}:other` : 'other';
    },
    providerLabel(provider) {
      return providers.has(provider) ? provider : 'other';
    },
  };
}
