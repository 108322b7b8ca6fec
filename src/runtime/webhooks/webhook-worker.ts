import type { WebhookStore } from '../../storage/webhooks/webhook-store.ts';
import { sendWebhook } from './webhook-sender.ts';

/** Options of {@link createWebhookWorker}. */
export interface WebhookWorkerOptions {
  readonly store: WebhookStore;
  readonly logger: { warn(object: object, message: string): void };
  readonly pollMs: number;
  readonly timeoutMs: number;
  readonly maxAttempts: number;
  /** Delays before retries 1, 2, 3…, in milliseconds (the last repeats). */
  readonly retryDelaysMs: readonly number[];
  readonly allowPrivateNetworks: boolean;
}

/** Sends queued webhooks; one per process, every process shares the outbox. */
export interface WebhookWorker {
  start(): void;
  /** Looks for work now (after a budget crossed a threshold in this process). */
  wake(): void;
  stop(): Promise<void>;
}

/**
 * The webhook delivery worker: announces new budget alerts (queues a delivery per subscribed
 * endpoint), then claims due deliveries with `SKIP LOCKED` and a lease, POSTs them signed,
 * and records each outcome: delivered, retried after the next delay (with jitter), or failed
 * after `maxAttempts`. A process dying mid-send leaves the lease to expire and the delivery
 * to be retried by any process: delivery is at least once (receivers dedupe on `webhook-id`).
 */
export function createWebhookWorker(options: WebhookWorkerOptions): WebhookWorker {
  const { store, logger } = options;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;
  let again = false;

  async function tick(): Promise<void> {
    for (;;) {
      // Before every claim, not once a tick: a tick lasts while deliveries are due, and a
      // backlog (one tenant's many endpoints to receivers that time out) must not keep other
      // tenants' new alerts from being queued until it has drained.
      await store.announceAlerts();
      const claimed = await store.claim(10, options.timeoutMs + 30_000);
      if (claimed.length === 0) return;
      await Promise.all(
        claimed.map(async (delivery) => {
          const { secret } = delivery;
          const outcome =
            secret === undefined
              ? {
                  ok: false,
                  status: null,
                  error: 'the signing secret is sealed and this process cannot open it (vault key)',
                }
              : await sendWebhook({
                  url: delivery.url,
                  secret,
                  id: delivery.id,
                  type: delivery.eventType,
                  payload: delivery.payload,
                  timeoutMs: options.timeoutMs,
                  allowPrivateNetworks: options.allowPrivateNetworks,
                });
          const delays = options.retryDelaysMs;
          const delay = delays[Math.min(delivery.attempts - 1, delays.length - 1)] ?? 60_000;
          const retryAt =
            outcome.ok || delivery.attempts >= options.maxAttempts
              ? null
              : new Date(Date.now() + delay * (0.8 + Math.random() * 0.4));
          await store.finish(delivery.id, { ...outcome, retryAt });
        }),
      );
      if (stopped) return;
    }
  }

  function run(): void {
    if (stopped) return;
    if (running !== undefined) {
      again = true;
      return;
    }
    running = tick()
      .catch((error: unknown) =>
        logger.warn({ err: { message: (error as Error).message } }, 'webhook delivery failed'),
      )
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          run();
        }
      });
  }

  return {
    start() {
      timer = setInterval(run, options.pollMs);
      timer.unref();
    },
    wake: run,
    async stop() {
      stopped = true;
      if (timer !== undefined) clearInterval(timer);
      await running;
    },
  };
}
