import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { toValidationError } from './error-response.ts';
import { problemSchema } from './schemas.ts';

type RouteConfig = Parameters<typeof createRoute>[0];

const retryAfter = {
  'Retry-After': {
    description: 'Seconds to wait before retrying (when the server can tell).',
    schema: { type: 'integer' as const },
  },
};

/**
 * An RFC 9457 problem+json error response declaration; `retry` declares the `Retry-After`
 * header its answers may carry.
 */
export function problemResponse(description: string, options: { readonly retry?: boolean } = {}) {
  return {
    description,
    ...(options.retry === true ? { headers: retryAfter } : {}),
    content: { 'application/problem+json': { schema: problemSchema } },
  };
}

/**
 * The error responses every authenticated operation can return, declared inline in each
 * operation (not as `components.responses` references: clients that read an operation's
 * responses without resolving references still see every status and its media type).
 */
export const standardErrors = {
  400: problemResponse(
    'Malformed JSON, a body that is not UTF-8, or no body where one is required (`invalid_json`).',
  ),
  401: problemResponse('Missing, unknown, expired or revoked credentials.'),
  403: problemResponse('The credential lacks the permission.'),
  404: problemResponse('Not found, or not visible to this credential.'),
  413: problemResponse('Request body too large.'),
  415: problemResponse('Request body is not JSON.'),
  422: problemResponse('Request failed validation; `errors` lists each field.'),
  429: problemResponse(
    'Too many requests (`rate_limited`): a requests-per-minute limit of the key, user, tenant or a policy.',
    { retry: true },
  ),
  500: problemResponse('Unexpected error (`internal`); only the request id is reported.'),
  503: problemResponse(
    'The server is overloaded or a concurrent change got in the way (`service_unavailable`); nothing was done, retry.',
    { retry: true },
  ),
} as const;

/** The query of an operation that declares none: no parameter, so any one sent is a 422. */
const noQuery = z.strictObject({});

/**
 * Declares an authenticated operation with the standard error responses. An operation without
 * a declared query refuses query parameters as list operations refuse unknown ones (422
 * `validation_failed`, `query.<name>: unknown field`) instead of ignoring them.
 */
export function authedRoute<const R extends RouteConfig>(config: R) {
  return createRoute({
    ...config,
    request: { query: noQuery, ...config.request },
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
 * The declared body of a PATCH of objects `shape` describes: every field optional, and `null`
 * for "remove this field" (JSON merge patch, RFC 7396; see {@link mergePatch}).
 */
export function patchBody(shape: z.ZodRawShape) {
  return z.strictObject(
    Object.fromEntries(
      Object.entries(shape).map(([key, field]) => [
        key,
        (field as z.ZodType).nullable().optional(),
      ]),
    ),
  );
}

/**
 * A PATCH merged over the stored definition and validated as a whole, like a new one. Only the
 * fields the client sent replace stored ones, and a field sent as `null` is removed (its
 * default, if it has one, applies again): a JSON merge patch at the top level. The body is read
 * as sent, since zod 4's `.partial()` (the operation's declared body, validated already) still
 * fills each field's `.default()`, which would reset every field left out.
 */
export async function mergePatch<T extends z.ZodType>(
  context: Context,
  stored: object,
  schema: T,
): Promise<z.infer<T>> {
  const sent = (await context.req.json()) as Record<string, unknown>;
  const patched: Record<string, unknown> = { ...stored, ...sent };
  for (const [key, value] of Object.entries(sent)) if (value === null) delete patched[key];
  const merged = schema.safeParse(patched);
  if (!merged.success) throw toValidationError('body', merged.error.issues);
  return merged.data;
}
