import type { Role } from '../domain/identity/permissions.ts';
import type { GatewayRequest, ModelGateway } from '../gateway/model-gateway.ts';
import type { PriceTable } from '../gateway/pricing.ts';
import type { ModelResultV1 } from '../plugin-api/index.ts';
import type { BudgetStore, Spender, UsageEntry } from '../storage/guards/budget-store.ts';
import type { ModelCallLimits } from './model-call-limits.ts';

/** Options for {@link createMeteredGateway}. */
export interface MeteredGatewayOptions {
  readonly gateway: ModelGateway;
  readonly budgets: BudgetStore;
  readonly prices: PriceTable;
  readonly logger: { warn(object: object, message: string): void };
  /** Tokens-per-minute and concurrent-model-call limits of policies. */
  readonly limits?: ModelCallLimits | undefined;
}

/** A model call with the spender it is billed to. */
export interface MeteredRequest extends GatewayRequest {
  readonly spender: Spender & { readonly role: Role | undefined };
  readonly source: 'run' | 'api';
  /** When the reservation counts as orphaned if nobody settled it (the caller's deadline). */
  readonly deadline: Date;
}

/** The gateway with budgets and metering in front of every call. */
export interface MeteredGateway {
  generate(request: MeteredRequest): Promise<ModelResultV1>;
}

function providerOf(model: string): string {
  const index = model.indexOf(':');
  return index <= 0 ? model : model.slice(0, index);
}

/** Reservations outlive the call's deadline by this much before the sweep resolves them. */
const orphanGraceMs = 60_000;

/**
 * Wraps every model call in the budget protocol (DESIGN.md invariant 7): reserve the priced
 * worst case (refused with `budget_exceeded` before any provider is paid), call, settle to the
 * actual cost and write the usage record in one transaction. A call that fails before any
 * output is released at no cost; one aborted after output started is charged for its input
 * bound and the output it streamed, since the provider bills for it.
 */
export function createMeteredGateway(options: MeteredGatewayOptions): MeteredGateway {
  const { gateway, budgets, prices } = options;
  return {
    async generate(request) {
      // Runs wait for room under their rate limits; API callers are told to retry.
      const permit = await options.limits?.acquire(request.spender, {
        wait: request.source === 'run',
        deadline: request.deadline,
        signal: request.signal,
      });
      let tokens = 0;
      try {
        const result = await metered(request);
        tokens = result.usage.inputTokens + result.usage.outputTokens;
        return result;
      } finally {
        permit?.release(tokens);
      }
    },
  };

  async function metered(request: MeteredRequest): Promise<ModelResultV1> {
    const worst = prices.worstCase(request.model, request);
    const reservation = await budgets.reserve(
      request.spender,
      worst,
      new Date(request.deadline.getTime() + orphanGraceMs),
    );
    const started = performance.now();
    let firstTokenAt: number | undefined;
    let streamedChars = 0;
    const base = {
      source: request.source,
      provider: providerOf(request.model),
      model: request.model,
    };
    let result: ModelResultV1;
    try {
      result = await gateway.generate({
        ...request,
        onTextDelta: (delta) => {
          firstTokenAt ??= performance.now();
          streamedChars += delta.length;
          request.onTextDelta?.(delta);
        },
      });
    } catch (error) {
      const outputStarted = firstTokenAt !== undefined;
      const entry: UsageEntry = {
        ...base,
        inputTokens: 0,
        outputTokens: outputStarted ? streamedChars : 0,
        estimated: true,
        cost: outputStarted ? worst : 0,
        latencyMs: performance.now() - started,
        ttftMs: firstTokenAt === undefined ? null : firstTokenAt - started,
        status: request.signal.aborted ? 'cancelled' : 'error',
        errorCode: (error as { code?: string }).code ?? null,
      };
      await budgets
        .settle(request.spender, reservation, entry)
        .catch((settleError: unknown) =>
          options.logger.warn(
            { err: { message: (settleError as Error).message } },
            'releasing a budget reservation failed; the sweep resolves it',
          ),
        );
      throw error;
    }
    const cost = Math.min(worst, prices.cost(request.model, result.usage));
    await budgets.settle(request.spender, reservation, {
      ...base,
      inputTokens: result.usage.inputTokens,
      outputTokens: result.usage.outputTokens,
      estimated: result.usage.estimated,
      cost,
      latencyMs: performance.now() - started,
      ttftMs: firstTokenAt === undefined ? null : firstTokenAt - started,
      status: 'ok',
    });
    return result;
  }
}
