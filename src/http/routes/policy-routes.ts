import { z } from '@hono/zod-openapi';
import {
  budgetPeriods,
  type CounterState,
  nanosPerUsd,
  type Policy,
  policyLevels,
} from '../../domain/guards/policy-types.ts';
import { roles } from '../../domain/identity/permissions.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';

const count = (description: string, min = 1) =>
  z.int().min(min).max(1_000_000_000).optional().openapi({ description });

const budgetSchema = z
  .strictObject({
    amountUsd: z
      .number()
      .min(1 / nanosPerUsd, 'Budgets are counted in nano-dollars: at least 0.000000001.')
      .max(1_000_000_000)
      .openapi({
        description: 'Money per period, in USD (counted in nano-dollars, so at least 0.000000001).',
      }),
    period: z.enum(budgetPeriods).openapi({
      description:
        "Calendar day, ISO week or month in the tenant's time zone, or a rolling window.",
    }),
    windowHours: z
      .int()
      .min(1)
      .max(24 * 90)
      .optional()
      .openapi({ description: 'Length of a rolling window in hours (default 24).' }),
  })
  .openapi('Budget');

const limitsSchema = z
  .strictObject({
    requestsPerMinute: count('API requests per minute.'),
    tokensPerMinute: count('Model tokens (input + output) per minute.'),
    concurrentRuns: count('Runs executing at once.'),
    concurrentModelCalls: count('Model calls in flight at once.'),
    runsPerDay: count('Runs created per day (tenant time zone).', 0),
    toolCallsPerDay: count('Tool calls per day (tenant time zone).', 0),
    budget: budgetSchema.optional(),
  })
  .openapi('PolicyLimits');

const policySchema = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid().nullable().openapi({ description: 'Null for platform policies.' }),
    level: z.enum(policyLevels),
    role: z.enum(roles).nullable(),
    subjectId: z.uuid().nullable(),
    name: z.string().nullable(),
    limits: limitsSchema,
    managedBy: z.enum(['operator', 'tenant']),
    version: z.int(),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Policy');

const createPolicySchema = z
  .strictObject({
    tenantId: z.uuid().optional().openapi({
      description:
        'The operator names the tenant (omit for platform policies); users act in their own.',
    }),
    level: z.enum(policyLevels).openapi({
      description:
        'platform: every tenant; tenant: the whole tenant; role: each user with `role`; user, api_key, agent: the one `subjectId`.',
    }),
    role: z.enum(roles).optional(),
    subjectId: z.uuid().optional(),
    name: z.string().min(1).max(200).optional(),
    limits: limitsSchema,
  })
  .openapi('CreatePolicy');

const updatePolicySchema = z
  .strictObject({
    name: z.string().min(1).max(200).nullable().optional(),
    limits: limitsSchema.optional().openapi({ description: 'Replaces every limit of the policy.' }),
  })
  .refine((value) => Object.keys(value).length > 0, 'at least one field is required')
  .openapi('UpdatePolicy');

const params = z.object({ policyId: idParam('policyId') });

const counterSchema = z
  .object({
    policyId: z.uuid(),
    level: z.enum(policyLevels),
    kind: z.enum(['budget', 'runsPerDay', 'toolCallsPerDay']),
    period: z.enum(budgetPeriods),
    agentId: z.uuid().nullable().openapi({ description: 'Set when the policy binds one agent.' }),
    limit: z.number(),
    used: z.number(),
    reserved: z.number().openapi({ description: 'Held by model calls in flight.' }),
    remaining: z.number(),
    periodStart: z.iso.datetime().nullable().openapi({
      description: 'When the current period began (null for a rolling budget).',
    }),
    resetsAt: z.iso.datetime().nullable().openapi({
      description:
        'When the current period ends. For a rolling budget: when its oldest spending in the window leaves it (the start of the hour it was counted in plus `windowHours`), freeing that much; null while nothing is spent or held in the window.',
    }),
  })
  .openapi('LimitCounter');

const effectiveSchema = z.object({
  limit: z.int(),
  source: z.enum(['policy', 'config']).openapi({
    description:
      "`policy`: set by the policy `policyId`; `config`: set by the server's configuration for every caller (`setting`), counted per `scope`.",
  }),
  policyId: z.uuid().nullable().openapi({ description: 'The policy (null for `config`).' }),
  level: z.enum(policyLevels).nullable().openapi({ description: 'Its level (null for `config`).' }),
  scope: z.enum(['key', 'user', 'tenant']).optional().openapi({
    description: '`config`: what the limit counts: each API key, each user, or the whole tenant.',
  }),
  setting: z.string().optional().openapi({
    description: '`config`: the configuration key, e.g. `limits.requestsPerMinute.key`.',
  }),
});

const myLimitsSchema = z
  .object({
    limits: z
      .object({
        requestsPerMinute: effectiveSchema.optional(),
        tokensPerMinute: effectiveSchema.optional(),
        concurrentRuns: effectiveSchema.optional(),
        concurrentModelCalls: effectiveSchema.optional(),
        runsPerDay: effectiveSchema.optional(),
        toolCallsPerDay: effectiveSchema.optional(),
      })
      .openapi({
        description:
          "The tightest limit of each kind that binds you, the policies' and the server configuration's (request rates per key, user and tenant; concurrent runs per user and tenant), and where it comes from: the one enforced.",
      }),
    budgets: z.array(counterSchema).openapi({ description: 'Amounts in USD.' }),
    quotas: z.array(counterSchema),
  })
  .openapi('MyLimits');

const createPolicy = authedRoute({
  method: 'post',
  path: '/v1/policies',
  operationId: 'createPolicy',
  tags: ['Policies'],
  summary: 'Set limits for the platform, a tenant, a role, a user, an API key or an agent',
  request: { body: jsonBody(createPolicySchema) },
  responses: {
    201: jsonResponse(policySchema, 'The policy.'),
    409: problemResponse(
      'You have a policy on this target already (the operator and the tenant may have one each, and both bind), or the tenant has `limits.perTenant.policies` policies (`resource_limit_exceeded`).',
    ),
  },
});
const listPolicies = authedRoute({
  method: 'get',
  path: '/v1/policies',
  operationId: 'listPolicies',
  tags: ['Policies'],
  summary: "The platform's policies and your tenant's (owners and admins; the operator)",
  request: {
    query: z.strictObject({
      tenantId: z.uuid().optional().openapi({ description: 'The operator names a tenant.' }),
    }),
  },
  responses: { 200: jsonResponse(z.object({ data: z.array(policySchema) }), 'Policies.') },
});
const getPolicy = authedRoute({
  method: 'get',
  path: '/v1/policies/{policyId}',
  operationId: 'getPolicy',
  tags: ['Policies'],
  summary: 'Get a policy',
  request: { params },
  responses: { 200: jsonResponse(policySchema, 'The policy.') },
});
const updatePolicy = authedRoute({
  method: 'patch',
  path: '/v1/policies/{policyId}',
  operationId: 'updatePolicy',
  tags: ['Policies'],
  summary: 'Change a policy (admins change their tenant’s own; the operator its own)',
  request: { params, body: jsonBody(updatePolicySchema) },
  responses: { 200: jsonResponse(policySchema, 'The policy.') },
});
const deletePolicy = authedRoute({
  method: 'delete',
  path: '/v1/policies/{policyId}',
  operationId: 'deletePolicy',
  tags: ['Policies'],
  summary: 'Delete a policy; its counters go with it',
  request: { params },
  responses: { 204: { description: 'Deleted.' } },
});
const getMyLimits = authedRoute({
  method: 'get',
  path: '/v1/me/limits',
  operationId: 'getMyLimits',
  tags: ['Policies'],
  summary: 'The limits that bind you, and what is left of each budget and quota',
  // No parameters: an unknown one (`?userId=`) is refused rather than silently ignored.
  request: { query: z.strictObject({}) },
  responses: { 200: jsonResponse(myLimitsSchema, 'Your limits.') },
});

function policyResponse(policy: Policy) {
  return {
    ...policy,
    limits: policy.limits as z.infer<typeof limitsSchema>,
    createdAt: policy.createdAt.toISOString(),
    updatedAt: policy.updatedAt.toISOString(),
  };
}

function counterResponse(counter: CounterState) {
  return {
    ...counter,
    periodStart: counter.periodStart?.toISOString() ?? null,
    resetsAt: counter.resetsAt?.toISOString() ?? null,
  };
}

/** Registers the policy operations and `getMyLimits`. */
export function registerPolicyRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(createPolicy, async (context) => {
    const body = context.req.valid('json');
    const policy = await services.policies.create(context.get('principal'), body);
    return context.json(policyResponse(policy), 201);
  });
  app.openapi(listPolicies, async (context) => {
    const policies = await services.policies.list(
      context.get('principal'),
      context.req.valid('query'),
    );
    return context.json({ data: policies.map(policyResponse) }, 200);
  });
  app.openapi(getPolicy, async (context) => {
    const policy = await services.policies.get(
      context.get('principal'),
      context.req.valid('param').policyId,
    );
    return context.json(policyResponse(policy), 200);
  });
  app.openapi(updatePolicy, async (context) => {
    const policy = await services.policies.update(
      context.get('principal'),
      context.req.valid('param').policyId,
      context.req.valid('json'),
    );
    return context.json(policyResponse(policy), 200);
  });
  app.openapi(deletePolicy, async (context) => {
    await services.policies.delete(context.get('principal'), context.req.valid('param').policyId);
    return context.body(null, 204);
  });
  app.openapi(getMyLimits, async (context) => {
    const mine = await services.policies.myLimits(context.get('principal'));
    return context.json(
      {
        limits: mine.limits,
        budgets: mine.budgets.map(counterResponse),
        quotas: mine.quotas.map(counterResponse),
      },
      200,
    );
  });
}
