import { z } from 'zod';
import {
  failureKinds,
  type ModelRouteDefinition,
  routeDefaults,
  routeNamePattern,
  routeStrategies,
} from './model-routes.ts';

const priceSchema = z.strictObject({
  inputPerMTok: z.number().min(0).max(100_000),
  outputPerMTok: z.number().min(0).max(100_000),
  cachedInputPerMTok: z.number().min(0).max(100_000).optional(),
});

const deploymentSchema = z.strictObject({
  model: z
    .string()
    .min(1)
    .max(200)
    .regex(/^(local|[a-z][a-z0-9-]{0,31}:.+)$/, 'must be local or <provider>:<model id>'),
  weight: z.number().positive().max(1_000_000).optional(),
  maxConcurrency: z.int().min(1).max(100_000).optional(),
  rpm: z.int().min(1).max(100_000_000).optional(),
  price: priceSchema.optional(),
  /** The model's context window in tokens (overrides the built-in table). */
  contextTokens: z.int().min(1).max(100_000_000).optional(),
});

/** What {@link routeNamePattern} allows, as validation messages say it. */
const routeNameRule =
  'lower-case letters, digits, . _ -, up to 63 characters, starting with a letter or digit; no colon';

/** A model route as a config file or an API request writes it (settings optional). */
export const modelRouteSchema = z.strictObject({
  // One message per problem: a name the pattern refuses is not also told it is `local`.
  name: z
    .string()
    .regex(routeNamePattern, routeNameRule)
    .refine(
      (name) => name !== 'local',
      "'local' is the built-in model's name; a route cannot take it",
    ),
  strategy: z.enum(routeStrategies).default(routeDefaults.strategy),
  deployments: z.array(deploymentSchema).min(1).max(32),
  fallbacks: z
    .array(
      z.strictObject({
        route: z.string().regex(routeNamePattern, routeNameRule),
        on: z.array(z.enum(failureKinds)).min(1),
      }),
    )
    .max(8)
    .default([]),
  attemptTimeoutMs: z.int().min(100).max(600_000).default(routeDefaults.attemptTimeoutMs),
  deadlineMs: z.int().min(100).max(3_600_000).default(routeDefaults.deadlineMs),
  retries: z
    .strictObject({
      maxAttempts: z.int().min(1).max(10).default(routeDefaults.retries.maxAttempts),
      baseDelayMs: z.int().min(0).max(60_000).default(routeDefaults.retries.baseDelayMs),
      maxDelayMs: z.int().min(0).max(300_000).default(routeDefaults.retries.maxDelayMs),
    })
    .prefault({}),
  breaker: z
    .strictObject({
      failureRate: z.number().gt(0).max(1).default(routeDefaults.breaker.failureRate),
      windowMs: z.int().min(1_000).max(3_600_000).default(routeDefaults.breaker.windowMs),
      minimumRps: z.number().min(0).max(10_000).default(routeDefaults.breaker.minimumRps),
      halfOpenAfterMs: z
        .int()
        .min(100)
        .max(3_600_000)
        .default(routeDefaults.breaker.halfOpenAfterMs),
    })
    .prefault({}),
  cache: z
    .strictObject({
      ttlSeconds: z
        .int()
        .min(1)
        .max(7 * 86_400),
      scope: z.enum(['user', 'tenant']).optional(),
    })
    .optional(),
});

/** The parsed route (every setting filled in). */
export type ModelRouteInput = z.infer<typeof modelRouteSchema>;

/** Checks that the route is consistent, e.g. it does not fall back to itself. */
export function routeProblems(route: ModelRouteDefinition): { path: string; message: string }[] {
  const problems: { path: string; message: string }[] = [];
  route.fallbacks.forEach((fallback, index) => {
    if (fallback.route === route.name)
      problems.push({
        path: `fallbacks.${index}.route`,
        message: 'A route cannot fall back to itself.',
      });
  });
  if (route.attemptTimeoutMs > route.deadlineMs)
    problems.push({ path: 'attemptTimeoutMs', message: 'An attempt cannot outlast the deadline.' });
  if (route.retries.baseDelayMs > route.retries.maxDelayMs)
    problems.push({ path: 'retries.baseDelayMs', message: 'must not exceed retries.maxDelayMs' });
  return problems;
}
