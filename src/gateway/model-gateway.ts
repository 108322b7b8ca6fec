import type { LanguageModel } from 'ai';
import { AppError } from '../domain/errors.ts';
import type { MessageV1, ModelResultV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { createLanguageModel, generateWithAiSdk, type ProviderConfig } from './ai-sdk-model.ts';
import { generateLocal } from './local-model.ts';

/** One model call as the runtime asks for it. */
export interface GatewayRequest {
  /** `local` (the built-in model) or `<provider>:<model id>`. */
  readonly model: string;
  readonly messages: readonly MessageV1[];
  readonly tools: readonly ToolDescriptionV1[];
  readonly maxOutputTokens: number;
  readonly signal: AbortSignal;
  readonly onTextDelta?: ((delta: string) => void) | undefined;
}

/** Every model call passes the gateway (DESIGN.md invariant 5). */
export interface ModelGateway {
  /** True when `model` names something this gateway can call. */
  knows(model: string): boolean;
  /** Model names this gateway can call, for error messages and listings. */
  describe(): readonly string[];
  generate(request: GatewayRequest): Promise<ModelResultV1>;
}

/** Options for {@link createModelGateway}. */
export interface ModelGatewayOptions {
  /** Delay between tokens of the local model, in milliseconds. */
  readonly localTokenDelayMs: number;
  /** Configured providers by name (keys already resolved from the environment). */
  readonly providers: Readonly<Record<string, ProviderConfig>>;
}

function split(model: string): { provider: string; modelId: string } | undefined {
  const index = model.indexOf(':');
  if (index <= 0 || index === model.length - 1) return undefined;
  return { provider: model.slice(0, index), modelId: model.slice(index + 1) };
}

/**
 * The model gateway: the built-in `local` model, and every configured provider through the
 * Vercel AI SDK. Routes, retries, fallbacks, breakers and metering arrive with issue #4 and
 * sit here, in front of every call.
 */
export function createModelGateway(options: ModelGatewayOptions): ModelGateway {
  const models = new Map<string, LanguageModel>();
  function languageModel(model: string): LanguageModel {
    const cached = models.get(model);
    if (cached !== undefined) return cached;
    const parts = split(model);
    const provider = parts === undefined ? undefined : options.providers[parts.provider];
    if (parts === undefined || provider === undefined) {
      throw new AppError('unknown_model', `No model route or provider named '${model}'.`);
    }
    const created = createLanguageModel(parts.provider, provider, parts.modelId);
    models.set(model, created);
    return created;
  }
  return {
    knows(model) {
      if (model === 'local') return true;
      const parts = split(model);
      return parts !== undefined && options.providers[parts.provider] !== undefined;
    },
    describe: () => ['local', ...Object.keys(options.providers).map((name) => `${name}:<model>`)],
    async generate(request) {
      if (request.model === 'local') {
        return generateLocal({
          messages: request.messages,
          tools: request.tools,
          maxOutputTokens: request.maxOutputTokens,
          signal: request.signal,
          onTextDelta: request.onTextDelta,
          tokenDelayMs: options.localTokenDelayMs,
        });
      }
      return generateWithAiSdk({
        model: languageModel(request.model),
        messages: request.messages,
        tools: request.tools,
        maxOutputTokens: request.maxOutputTokens,
        signal: request.signal,
        onTextDelta: request.onTextDelta,
      });
    },
  };
}
