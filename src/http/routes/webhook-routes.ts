import { isIP } from 'node:net';
import { z } from '@hono/zod-openapi';
import { asTenantUser } from '../../domain/agents/agent-service.ts';
import { NotFoundError, ValidationError } from '../../domain/errors.ts';
import { assertCan } from '../../domain/identity/principal.ts';
import { isPrivateAddress, newWebhookSecret } from '../../runtime/webhooks/webhook-sender.ts';
import type { WebhookEndpoint } from '../../storage/webhooks/webhook-store.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';

/** Events a webhook can subscribe to. */
export const webhookEvents = ['budget.threshold'] as const;

const params = z.object({ webhookId: idParam('webhookId') });

const webhookSchema = z
  .object({
    id: z.uuid(),
    url: z.string(),
    events: z.array(z.enum(webhookEvents)),
    description: z.string().nullable(),
    enabled: z.boolean(),
    createdAt: z.iso.datetime(),
  })
  .openapi('Webhook');

const createWebhook = authedRoute({
  method: 'post',
  path: '/v1/webhooks',
  operationId: 'createWebhook',
  tags: ['Webhooks'],
  summary: 'Subscribe a URL to events (owners and admins); the signing secret is shown once',
  request: {
    body: jsonBody(
      z
        .strictObject({
          url: z.url({ protocol: /^https?$/ }).max(2000),
          events: z.array(z.enum(webhookEvents)).min(1),
          description: z.string().max(500).nullable().default(null),
        })
        .openapi('CreateWebhookRequest'),
    ),
  },
  responses: {
    201: jsonResponse(
      webhookSchema.extend({
        secret: z.string().openapi({
          description:
            'Standard Webhooks secret (`whsec_…`): verify `webhook-signature` with it. Shown once.',
        }),
      }),
      'The webhook and its signing secret.',
    ),
    409: problemResponse(
      'The tenant has `webhooks.maxPerTenant` webhooks already (`webhook_limit_exceeded`).',
    ),
  },
});
const listWebhooks = authedRoute({
  method: 'get',
  path: '/v1/webhooks',
  operationId: 'listWebhooks',
  tags: ['Webhooks'],
  summary: "Your tenant's webhooks (owners and admins)",
  responses: { 200: jsonResponse(z.object({ data: z.array(webhookSchema) }), 'Webhooks.') },
});
const deleteWebhook = authedRoute({
  method: 'delete',
  path: '/v1/webhooks/{webhookId}',
  operationId: 'deleteWebhook',
  tags: ['Webhooks'],
  summary: 'Delete a webhook and its pending deliveries',
  request: { params },
  responses: { 204: { description: 'Deleted.' } },
});
const listWebhookDeliveries = authedRoute({
  method: 'get',
  path: '/v1/webhooks/{webhookId}/deliveries',
  operationId: 'listWebhookDeliveries',
  tags: ['Webhooks'],
  summary: 'The last 100 deliveries of a webhook, newest first, with their attempts and outcome',
  request: { params },
  responses: {
    200: jsonResponse(
      z.object({
        data: z.array(
          z.object({
            id: z.uuid(),
            eventType: z.string(),
            payload: z.unknown(),
            status: z.enum(['pending', 'delivered', 'failed']),
            attempts: z.int(),
            nextAttemptAt: z.iso.datetime(),
            lastStatus: z.int().nullable(),
            lastError: z.string().nullable(),
            createdAt: z.iso.datetime(),
            deliveredAt: z.iso.datetime().nullable(),
          }),
        ),
      }),
      'Deliveries.',
    ),
  },
});
const listBudgetAlerts = authedRoute({
  method: 'get',
  path: '/v1/budget-alerts',
  operationId: 'listBudgetAlerts',
  tags: ['Policies'],
  summary: 'Budget thresholds (50, 80, 100 %) crossed in your tenant, newest first (admins)',
  responses: {
    200: jsonResponse(
      z.object({
        data: z.array(
          z.object({
            id: z.uuid(),
            policyId: z.uuid(),
            subjectId: z.uuid(),
            periodStart: z.iso.datetime(),
            threshold: z.int(),
            usedUsd: z.number(),
            limitUsd: z.number(),
            createdAt: z.iso.datetime(),
          }),
        ),
      }),
      'Alerts.',
    ),
  },
});

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function webhookResponse(endpoint: WebhookEndpoint) {
  return {
    ...endpoint,
    events: endpoint.events as (typeof webhookEvents)[number][],
    createdAt: endpoint.createdAt.toISOString(),
  };
}

/** Registers the webhook operations and `listBudgetAlerts`. */
export function registerWebhookRoutes(
  app: BrigadeApp,
  services: RouteServices,
  options: { readonly allowPrivateNetworks: boolean },
): void {
  app.openapi(createWebhook, async (context) => {
    const user = asTenantUser(context.get('principal'));
    assertCan(user, 'policy:manage');
    const body = context.req.valid('json');
    const host = new URL(body.url).hostname.replace(/^\[|\]$/g, '');
    // Literal addresses are checked here; names are checked on every delivery, against the
    // address the connection actually resolves to.
    if (
      !options.allowPrivateNetworks &&
      (host === 'localhost' || (isIP(host) !== 0 && isPrivateAddress(host)))
    ) {
      throw new ValidationError([
        { path: 'body.url', message: 'Webhooks cannot target private or loopback addresses.' },
      ]);
    }
    const secret = newWebhookSecret();
    // An event named twice is subscribed once (as a key's repeated scopes are).
    const events = [...new Set(body.events)];
    const created = await services.webhooks.create(user, { ...body, events, secret });
    return context.json({ ...webhookResponse(created), secret }, 201);
  });
  app.openapi(listWebhooks, async (context) => {
    const user = asTenantUser(context.get('principal'));
    assertCan(user, 'policy:read');
    const endpoints = await services.webhooks.list(user);
    return context.json({ data: endpoints.map(webhookResponse) }, 200);
  });
  app.openapi(deleteWebhook, async (context) => {
    const user = asTenantUser(context.get('principal'));
    assertCan(user, 'policy:manage');
    const { webhookId } = context.req.valid('param');
    if (!uuidPattern.test(webhookId) || !(await services.webhooks.delete(user, webhookId)))
      throw new NotFoundError('not_found', 'Webhook not found.');
    return context.body(null, 204);
  });
  app.openapi(listWebhookDeliveries, async (context) => {
    const user = asTenantUser(context.get('principal'));
    assertCan(user, 'policy:read');
    const { webhookId } = context.req.valid('param');
    const deliveries = uuidPattern.test(webhookId)
      ? await services.webhooks.deliveries(user, webhookId)
      : undefined;
    if (deliveries === undefined) throw new NotFoundError('not_found', 'Webhook not found.');
    return context.json(
      {
        data: deliveries.map(({ endpointId: _, ...delivery }) => ({
          ...delivery,
          nextAttemptAt: delivery.nextAttemptAt.toISOString(),
          createdAt: delivery.createdAt.toISOString(),
          deliveredAt: delivery.deliveredAt?.toISOString() ?? null,
        })),
      },
      200,
    );
  });
  app.openapi(listBudgetAlerts, async (context) => {
    const user = asTenantUser(context.get('principal'));
    assertCan(user, 'policy:read');
    const alerts = await services.webhooks.alerts(user);
    return context.json(
      {
        data: alerts.map((alert) => ({
          ...alert,
          periodStart: alert.periodStart.toISOString(),
          createdAt: alert.createdAt.toISOString(),
        })),
      },
      200,
    );
  });
}
