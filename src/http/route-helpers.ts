import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { toValidationError } from './error-response.ts';
import { problemSchema } from './schemas.ts';

type RouteConfig = Parameters<typeof createRoute>[0];

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: problemSchema } },
});

/** Error responses every authenticated operation can return. */
export const standardErrors = {
  400: problem('Malformed JSON.'),
  401: problem('Missing, unknown, expired or revoked credentials.'),
  403: problem('The credential lacks the permission.'),
  404: problem('Not found, or not visible to this credential.'),
  413: problem('Request body too large.'),
  415: problem('Request body is not JSON.'),
  422: problem('Request failed validation; `errors` lists each field.'),
} as const;

/** Declares an authenticated operation with the standard error responses. */
export function authedRoute<const R extends RouteConfig>(config: R) {
  return createRoute({
    ...config,
    security: [{ bearerAuth: [] }],
    responses: { ...standardErrors, ...config.responses },
  } as R & { responses: R['responses'] & typeof standardErrors });
}

/** A JSON response declaration. */
export function jsonResponse<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { 'application/json': { schema } } };
}

/** A JSON request body declaration (required). */
export function jsonBody<T extends z.ZodType>(schema: T) {
  return { required: true, content: { 'application/json': { schema } } };
}

/** Path parameter schema for an id (validated as a UUID inside services: 404, not 422). */
export const idParam = (name: string) =>
  z
    .string()
    .max(100)
    .openapi({ param: { name, in: 'path' }, format: 'uuid' });

/**
 * A PATCH merged over the stored definition and validated as a whole, like a new one. Only the
 * fields the client sent replace stored ones: the body is read as sent, since zod 4's
 * `.partial()` (the operation's declared body, validated already) still fills each field's
 * `.default()`, which would reset every field left out.
 */
export async function mergePatch<T extends z.ZodType>(
  context: Context,
  stored: object,
  schema: T,
): Promise<z.infer<T>> {
  const sent = (await context.req.json()) as Record<string, unknown>;
  const merged = schema.safeParse({ ...stored, ...sent });
  if (!merged.success) throw toValidationError('body', merged.error.issues);
  return merged.data;
}
