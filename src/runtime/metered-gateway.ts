import { AppError } from '../domain/errors.ts';
import type { Role } from '../domain/identity/permissions.ts';
import {
  countWhereNeeded,
  fitsContext,
  type PromptSize,
  windowOf,
} from '../gateway/context-fit.ts';
import type { GatewayRequest, GatewayResult, ModelGateway } from '../gateway/model-gateway.ts';
import { isRouteName } from '../gateway/model-routes.ts';
import { type InputMeasure, measureInput, type PriceTable } from '../gateway/pricing.ts';
import { type RouteAttempt, RouteFailedError } from '../gateway/route-failures.ts';
import { countAnswerTokens, createPromptTokens, tokenizerOf } from '../gateway/token-count.ts';
import type { ModelCallSample } from '../observability/metrics.ts';
import { activeSpan, SpanKind, type Tracing } from '../observability/tracing.ts';
import type { ModelResultV1 } from '../plugin-api/index.ts';
import type { SettleCall } from '../storage/guards/budget-calls.ts';
import type {
  BudgetStore,
  ReserveVia,
  Spender,
  UsageEntry,
} from '../storage/guards/budget-store.ts';
import { messagesForSpan, redactContent, redactName } from './content-capture.ts';
import type { ModelCallLimits } from './model-call-limits.ts';

/** Options for {@link createMeteredGateway}. */
export interface MeteredGatewayOptions {
  readonly gateway: ModelGateway;
  readonly budgets: BudgetStore;
  readonly prices: PriceTable;
  readonly logger: { warn(object: object, message: string): void };
  /** Tokens-per-minute and concurrent-model-call limits of policies. */
  readonly limits?: ModelCallLimits | undefined;
  /** Told of every usage record written (metrics). */
  readonly onUsage?: ((entry: UsageEntry) => void) | undefined;
  /** Told when a call made a budget cross an alert threshold (wakes the webhook worker). */
  readonly onBudgetAlert?: (() => void) | undefined;
  /** One `chat <model>` span per call (GenAI semantic conventions). */
  readonly tracing?: Tracing | undefined;
  /** Whether a spender's prompt and response text may go on spans (always redacted). */
  readonly captureContent?: ((subject: Spender) => Promise<boolean>) | undefined;
  /**
   * Model names the operator configured (gateway/model-names.ts): they go on spans as they
   * are; any other (a caller's choice) is redacted first, like captured content.
   */
  readonly modelNames?: { isConfigured(model: string): boolean } | undefined;
}

/** A model call with the spender it is billed to. */
export interface MeteredRequest extends GatewayRequest {
  readonly spender: Spender & { readonly role: Role | undefined };
  readonly source: 'run' | 'api';
  /** When the reservation counts as orphaned if nobody settled it (the caller's deadline). */
  readonly deadline: Date;
  /** Past `atPercent` % of a binding budget, call `model` instead (graceful degradation). */
  readonly degrade?: { readonly atPercent: number; readonly model: string } | undefined;
  /**
   * Leave a successful call's settlement to the caller, who commits it with its own write
   * (a run's model step: migration 0023); the result carries it as `settlement`. Failed
   * calls are still settled (released) here.
   */
  readonly deferSettlement?: boolean | undefined;
  /**
   * Sends the call's budget reservation together with the caller's own write (a run's tool
   * step, checkpointed in the reservation's transaction). Not used when the call fails before
   * it reserves; `beforeWait` is told first when the call is about to wait for a rate limit.
   */
  readonly reserveVia?: ReserveVia | undefined;
  /** Told once, before the call waits for room under a rate limit (see `reserveVia`). */
  readonly beforeWait?: (() => Promise<void>) | undefined;
  /** The run step this call is: its span carries the run's thread and the step's key. */
  readonly runStep?: { readonly threadId: string; readonly key: string } | undefined;
  /**
   * Told, before the failure is thrown, the usage a call that failed or was cut off after its
   * output started is charged with (its usage record's tokens, estimated): a run counts it.
   */
  readonly onCharged?: ((usage: ModelResultV1['usage']) => void) | undefined;
}

/** A successful call's settlement, left to the caller to commit (see `deferSettlement`). */
export interface PendingSettlement {
  /** brigade.settle_call's arguments (see storage/guards/budget-store.ts). */
  readonly call: SettleCall;
  /** Tells the gateway the settlement committed, having crossed `crossed` alert thresholds. */
  committed(crossed: number): void;
  /**
   * Settles on its own, for a caller whose write failed. Safe after a write that did commit
   * (its answer lost): a reservation already resolved is left as it is, with no second record.
   */
  settleAlone(): Promise<void>;
}

/**
 * A metered call's result; `degraded` when the degradation model answered, `settlement` when
 * the caller asked to commit it.
 */
export type MeteredResult = ModelResultV1 & {
  readonly degraded?: boolean;
  readonly settlement?: PendingSettlement;
};

/** The gateway with budgets and metering in front of every call. */
export interface MeteredGateway {
  generate(request: MeteredRequest): Promise<MeteredResult>;
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
  const spanName = (model: string) =>
    options.modelNames?.isConfigured(model) === true ? model : redactName(model);
  return {
    generate(request) {
      const tracing = options.tracing;
      if (tracing === undefined) return limitedAndMetered(request);
      return tracing.inSpan(
        `chat ${spanName(request.model)}`,
        {
          kind: SpanKind.CLIENT,
          attributes: {
            ...tracing.subjectAttributes({
              tenantId: request.spender.tenantId,
              userId: request.spender.userId,
              runId: request.spender.runId,
              threadId: request.runStep?.threadId,
            }),
            ...(request.runStep === undefined ? {} : { 'brigade.step.key': request.runStep.key }),
            'gen_ai.operation.name': 'chat',
            'gen_ai.provider.name': spanName(providerOf(request.model)),
            'gen_ai.request.model': spanName(request.model),
            'gen_ai.request.max_tokens': request.maxOutputTokens,
            'brigade.source': request.source,
          },
        },
        () => limitedAndMetered(request),
      );
    },
  };

  async function limitedAndMetered(request: MeteredRequest): Promise<MeteredResult> {
    // Measured once, for the rate limit (when one binds) and the budget alike: a degraded
    // call sends the same input to another model.
    let input: InputMeasure | undefined;
    const measure = () =>
      (input ??= measureInput(request.messages, {
        tools: request.tools,
        responseFormat: request.responseFormat,
      }));
    // Runs wait for room under their rate limits; API callers are told to retry.
    const permit = await options.limits?.acquire(request.spender, {
      wait: request.source === 'run',
      deadline: request.deadline,
      signal: request.signal,
      beforeWait: request.beforeWait,
      // Counted at the start, so calls made at once cannot all pass one window's limit.
      expectedTokens: () => measure().floor + request.maxOutputTokens,
    });
    // Unknown until the call returns: a call that failed or was cut off keeps the tokens
    // counted at its start (it may have used them all).
    let tokens: number | undefined;
    try {
      const degraded =
        request.degrade !== undefined &&
        (await budgets.utilization(request.spender)) * 100 >= request.degrade.atPercent;
      const result = await metered(
        degraded && request.degrade !== undefined
          ? { ...request, model: request.degrade.model }
          : request,
        measure(),
      );
      tokens = result.usage.inputTokens + result.usage.outputTokens;
      const span = activeSpan();
      if (degraded) span?.setAttribute('brigade.degraded', true);
      if (
        options.tracing !== undefined &&
        span?.isRecording() === true &&
        (await options.captureContent?.(request.spender)) === true
      ) {
        span.setAttributes({
          'gen_ai.input.messages': messagesForSpan(request.messages),
          'gen_ai.output.messages': redactContent(
            JSON.stringify([
              { role: 'assistant', parts: [{ type: 'text', content: result.text }] },
            ]),
          ),
        });
      }
      return degraded ? { ...result, degraded: true } : result;
    } finally {
      permit?.release(tokens);
    }
  }

  async function metered(request: MeteredRequest, input: InputMeasure): Promise<MeteredResult> {
    const tenantId = request.spender.tenantId;
    const deployments = await gateway.deployments(request.model, tenantId);
    if (deployments.length === 0)
      throw new AppError('unknown_model', `No model route or provider named '${request.model}'.`);
    // Refused before any provider is paid when no deployment's context can hold the prompt:
    // by its byte bound where that settles it (most calls), else by its token count.
    const size: PromptSize = { bound: input.bound, tokens: createPromptTokens(request) };
    await countWhereNeeded(
      size,
      deployments,
      request.fitOutputToContext === true ? request.maxOutputTokens : 0,
    );
    if (!deployments.some((deployment) => fitsContext(size, deployment))) {
      const largest = Math.max(...deployments.map((deployment) => windowOf(deployment) ?? 0));
      const counted = tokenizerOf(deployments[0]?.model ?? request.model).encoding;
      throw new AppError(
        'context_length_exceeded',
        `The prompt has about ${size.tokens.counted(counted) ?? size.bound} tokens, more than the context of every model of '${request.model}' (${largest} at most).`,
      );
    }
    // A routed call may end on any deployment of its route or fallbacks: reserve the dearest.
    const worst = Math.max(
      ...deployments.map((deployment) =>
        prices.worstCase(
          deployment.model,
          { input, maxOutputTokens: request.maxOutputTokens },
          deployment.price,
        ),
      ),
    );
    const reservation = await budgets.reserve(request.spender, worst, {
      expiresAt: new Date(request.deadline.getTime() + orphanGraceMs),
      via: request.reserveVia,
    });
    const started = performance.now();
    let firstTokenAt: number | undefined;
    let streamedText = '';
    const called: string[] = [];
    const route =
      gateway.knows(request.model) && !isRouteName(request.model) ? null : request.model;
    const failedAttempts = (attempts: readonly RouteAttempt[]): UsageEntry[] =>
      attempts
        .filter((attempt) => attempt.status === 'error' && !attempt.streamed)
        .map((attempt) => ({
          source: request.source,
          route,
          provider: providerOf(attempt.model),
          model: attempt.model,
          inputTokens: 0,
          outputTokens: 0,
          estimated: false,
          cost: 0,
          latencyMs: attempt.latencyMs,
          ttftMs: null,
          status: 'error',
          errorCode: attempt.errorClass ?? null,
          kind: 'attempt',
        }));
    let result: GatewayResult;
    try {
      result = await gateway.generate({
        ...request,
        tenantId,
        deadline: request.deadline,
        promptSize: size,
        onAttempt: (model) => called.push(model),
        onTextDelta: (delta) => {
          firstTokenAt ??= performance.now();
          streamedText += delta;
          request.onTextDelta?.(delta);
        },
      });
    } catch (error) {
      const outputStarted = firstTokenAt !== undefined;
      const attempts = error instanceof RouteFailedError ? error.attempts : [];
      // A cancel ends a call with the caller's reason, no attempts on it: the deployment it
      // was calling is the last one started (none: the name it asked for).
      const model = attempts.at(-1)?.model ?? called.at(-1) ?? request.model;
      // Output began, so the provider bills the call: its tokens, counted (no usage came).
      const counts = outputStarted
        ? await countFailedCall(size, { model, streamedText }).catch(() => undefined)
        : undefined;
      const entry: UsageEntry = {
        source: request.source,
        route,
        provider: providerOf(model),
        model,
        inputTokens: counts?.inputTokens ?? 0,
        outputTokens: counts?.outputTokens ?? 0,
        estimated: true,
        cost: outputStarted ? worst : 0,
        latencyMs: performance.now() - started,
        ttftMs: firstTokenAt === undefined ? null : firstTokenAt - started,
        status: request.signal.aborted ? 'cancelled' : 'error',
        errorCode: (error as { code?: string }).code ?? null,
        // A failure that is not the router's (the local model's, an abort): the attempts begun.
        attempts: error instanceof RouteFailedError ? attempts.length : Math.max(1, called.length),
      };
      const failed = failedAttempts(attempts.slice(0, -1));
      for (const recorded of [...failed, entry]) options.onUsage?.(recorded);
      if (outputStarted)
        request.onCharged?.({
          inputTokens: entry.inputTokens,
          outputTokens: entry.outputTokens,
          estimated: entry.estimated,
        });
      await budgets
        .settle(request.spender, reservation, { entry, failedAttempts: failed })
        .catch((settleError: unknown) =>
          options.logger.warn(
            { err: { message: (settleError as Error).message } },
            'releasing a budget reservation failed; the sweep resolves it',
          ),
        );
      throw error;
    }
    const { served, ...answer } = result;
    const deployment = deployments.find((candidate) => candidate.model === served.model);
    const cost = Math.min(worst, prices.cost(served.model, result.usage, deployment?.price));
    const settled: UsageEntry = {
      source: request.source,
      route,
      provider: providerOf(served.model),
      model: served.model,
      inputTokens: result.usage.inputTokens,
      outputTokens: result.usage.outputTokens,
      cachedTokens: result.usage.cachedInputTokens ?? 0,
      estimated: result.usage.estimated,
      cost,
      latencyMs: performance.now() - started,
      ttftMs: firstTokenAt === undefined ? null : firstTokenAt - started,
      status: 'ok',
      attempts: Math.max(1, served.attempts.length),
    };
    const failed = failedAttempts(served.attempts);
    for (const recorded of [...failed, settled]) options.onUsage?.(recorded);
    activeSpan()?.setAttributes({
      'gen_ai.response.model': spanName(served.model),
      'gen_ai.usage.input_tokens': result.usage.inputTokens,
      'gen_ai.usage.output_tokens': result.usage.outputTokens,
      'brigade.cost_usd': cost / 1e9,
      // Deployments tried, the one that answered included (a direct `local` call lists none).
      'brigade.attempts': Math.max(1, served.attempts.length),
      ...(route === null ? {} : { 'brigade.route': spanName(route) }),
    });
    const usage = { entry: settled, failedAttempts: failed };
    const committed = (crossed: number) => {
      if (crossed > 0) options.onBudgetAlert?.();
    };
    if (request.deferSettlement === true) {
      return {
        ...answer,
        settlement: {
          call: budgets.settlement(request.spender, reservation, usage),
          committed,
          settleAlone: async () =>
            committed(await budgets.settle(request.spender, reservation, usage)),
        },
      };
    }
    committed(await budgets.settle(request.spender, reservation, usage));
    return answer;
  }
}

/** A usage record as the metrics count it (cost in USD; no tenant, user or run). */
export function modelCallSample(entry: UsageEntry): ModelCallSample {
  return {
    provider: entry.provider,
    model: entry.model,
    status: entry.status,
    inputTokens: entry.inputTokens,
    outputTokens: entry.outputTokens,
    costUsd: entry.cost / 1_000_000_000,
    latencyMs: entry.latencyMs,
  };
}

/** The estimated tokens of a call that failed after `streamedText` reached the caller. */
async function countFailedCall(
  size: PromptSize,
  call: { readonly model: string; readonly streamedText: string },
): Promise<{ inputTokens: number; outputTokens: number }> {
  const { encoding } = tokenizerOf(call.model);
  return {
    inputTokens: await size.tokens.count(encoding),
    outputTokens: await countAnswerTokens({ text: call.streamedText, toolCalls: [] }, encoding),
  };
}
