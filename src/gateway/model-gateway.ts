import { AppError } from '../domain/errors.ts';
import type { MessageV1, ModelResultV1, ToolDescriptionV1 } from '../plugin-api/index.ts';
import { generateLocal } from './local-model.ts';

/** One model call as the runtime asks for it. */
export interface GatewayRequest {
  /** Model route or `provider:model`; `local` is the built-in model. */
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
  generate(request: GatewayRequest): Promise<ModelResultV1>;
}

/** Options for {@link createModelGateway}. */
export interface ModelGatewayOptions {
  /** Delay between tokens of the local model, in milliseconds. */
  readonly localTokenDelayMs: number;
}

/**
 * The model gateway. Today it serves the built-in `local` model; routes, providers,
 * retries, fallbacks, breakers and metering arrive with the gateway issue (#4).
 */
export function createModelGateway(options: ModelGatewayOptions): ModelGateway {
  return {
    knows: (model) => model === 'local',
    async generate(request) {
      if (request.model !== 'local') {
        throw new AppError('unknown_model', `No model route or provider named '${request.model}'.`);
      }
      return generateLocal({
        messages: request.messages,
        tools: request.tools,
        maxOutputTokens: request.maxOutputTokens,
        signal: request.signal,
        onTextDelta: request.onTextDelta,
        tokenDelayMs: options.localTokenDelayMs,
      });
    },
  };
}
