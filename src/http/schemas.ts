import { z } from '@hono/zod-openapi';
import { creationCursorPattern } from '../domain/creation-cursor.ts';
import type { ApiKey, OidcProvider, Tenant, User } from '../domain/identity/identity-types.ts';
import { actions, roles } from '../domain/identity/permissions.ts';
import { algorithmsProblem, oidcAlgorithms, parsePublicKeyPem } from './oidc-keys.ts';
import { withoutProtoKeys } from './proto-keys.ts';

/** A free-form metadata object (tenants, users, agents, threads); no key `__proto__`. */
export const metadataSchema = withoutProtoKeys(
  z
    .record(z.string().max(100), z.unknown())
    .refine((value) => JSON.stringify(value).length <= 16_384, 'must serialise to at most 16 KiB'),
).openapi({ description: 'Free-form JSON object, at most 16 KiB; no key may be `__proto__`.' });

// No `i` flag: the OpenAPI document publishes the pattern's source, where a flag cannot go.
const uuidPattern = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function pageQuery(cursor: { pattern: RegExp; description: string }) {
  return z.strictObject({
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(100)
      .default(50)
      .openapi({ description: 'Page size (1–100).' }),
    after: z
      .string()
      .max(100)
      .regex(cursor.pattern, 'must be the nextCursor of a previous page')
      .optional()
      .openapi({ description: cursor.description }),
  });
}

/** Cursor pagination query of the list operations whose cursor is an id. */
export const pageQuerySchema = pageQuery({
  pattern: uuidPattern,
  description: 'Cursor: `nextCursor` of the previous page.',
});

/** Cursor pagination query of a thread's messages (the cursor is a message `seq`). */
export const seqPageQuerySchema = pageQuery({
  pattern: /^\d{1,15}$/,
  description: 'Cursor: `nextCursor` of the previous page (a message `seq`).',
});

/**
 * Cursor pagination query of the lists in creation order, oldest first (a thread's runs,
 * pending approvals): the cursor holds the last item's creation time and id.
 */
export const creationPageQuerySchema = pageQuery({
  pattern: creationCursorPattern,
  description: 'Cursor: `nextCursor` of the previous page (opaque).',
});

/** Builds the schema of a page of `item`. */
export function pageSchema<T extends z.ZodType>(item: T, name: string) {
  return z.object({ data: z.array(item), nextCursor: z.string().nullable() }).openapi(name);
}

const timeZoneSchema = z.string().refine((value) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: value });
    return true;
  } catch {
    return false;
  }
}, 'must be an IANA time zone such as Europe/Paris');

export const createTenantSchema = z
  .strictObject({
    slug: z
      .string()
      .regex(
        /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/,
        'lower-case letters, digits and dashes, 2–63 characters',
      ),
    name: z.string().trim().min(1).max(200),
    timeZone: timeZoneSchema.default('UTC'),
    metadata: metadataSchema.default({}),
  })
  .openapi('CreateTenantRequest');

export const updateTenantSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    status: z.enum(['active', 'suspended']).optional().openapi({
      description: 'Operator only. A suspended tenant’s keys and sign-ins are refused.',
    }),
    timeZone: timeZoneSchema.optional(),
    captureContent: z.boolean().optional().openapi({
      description:
        'Put prompt and response text (redacted) on spans of users who consented to content_capture. Off by default.',
    }),
    metadata: metadataSchema.optional(),
  })
  .refine((value) => Object.keys(value).length > 0, 'at least one field is required')
  .openapi('UpdateTenantRequest');

export const tenantSchema = z
  .object({
    id: z.uuid(),
    slug: z.string(),
    name: z.string(),
    status: z.enum(['active', 'suspended']),
    timeZone: z.string(),
    captureContent: z.boolean(),
    metadata: z.record(z.string(), z.unknown()),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('Tenant');

const roleSchema = z.enum(roles).openapi({ description: 'Role of the user in the tenant.' });

/** A user's e-mail address, as the API and just-in-time provisioning accept it. */
export const emailSchema = z.email().max(320);

export const createUserSchema = z
  .strictObject({
    email: emailSchema.nullable().default(null),
    displayName: z.string().trim().min(1).max(200).nullable().default(null),
    role: roleSchema.default('member'),
    metadata: metadataSchema.default({}),
  })
  .openapi('CreateUserRequest');

export const updateUserSchema = z
  .strictObject({
    email: emailSchema.nullable().optional(),
    displayName: z.string().trim().min(1).max(200).nullable().optional(),
    role: roleSchema.optional(),
    status: z.enum(['active', 'disabled']).optional(),
    metadata: metadataSchema.optional(),
  })
  .refine((value) => Object.keys(value).length > 0, 'at least one field is required')
  .openapi('UpdateUserRequest');

export const userSchema = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid(),
    email: z.string().nullable(),
    displayName: z.string().nullable(),
    role: roleSchema,
    status: z.enum(['active', 'disabled']),
    externalIssuer: z.string().nullable(),
    externalSubject: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('User');

const scopeSchema = z.enum(actions);

export const createApiKeySchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100),
    scopes: z.array(scopeSchema).min(1).max(actions.length).optional().openapi({
      description:
        'Actions the key is limited to; omitted means every action of the user’s role that the creating credential may grant (422 `body.scopes` when that is none).',
    }),
    expiresAt: z.iso.datetime({ offset: true }).optional(),
  })
  .openapi('CreateApiKeyRequest');

export const rotateApiKeySchema = z
  .strictObject({
    gracePeriodSeconds: z
      .int()
      .min(0)
      .max(7 * 86_400)
      .default(0)
      .openapi({
        description: 'How long the old secret keeps working after rotation.',
      }),
  })
  .openapi('RotateApiKeyRequest');

export const apiKeySchema = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid(),
    userId: z.uuid(),
    name: z.string(),
    prefix: z.string(),
    scopes: z.array(scopeSchema).nullable(),
    status: z.enum(['active', 'revoked', 'expired']),
    expiresAt: z.iso.datetime().nullable(),
    lastUsedAt: z.iso.datetime().nullable(),
    revokedAt: z.iso.datetime().nullable(),
    rotatedFromId: z.uuid().nullable(),
    createdAt: z.iso.datetime(),
  })
  .openapi('ApiKey');

export const createdApiKeySchema = apiKeySchema
  .extend({
    secret: z.string().openapi({ description: 'The secret; shown only in this response.' }),
  })
  .openapi('CreatedApiKey');

/**
 * `schema` or null, for a schema registered as an OpenAPI component. `.nullable()` there makes
 * the generator declare the component itself nullable (`type: ["object", "null"]`) wherever it
 * is used, whenever the nullable use is met first; a union stays `anyOf: [$ref, null]`.
 */
export function nullableComponent<T extends z.ZodType>(schema: T) {
  return z.union([schema, z.null()]);
}

export const meSchema = z
  .object({
    kind: z.enum(['operator', 'user']),
    tenant: nullableComponent(tenantSchema),
    user: nullableComponent(userSchema),
    keyId: z.uuid().nullable(),
    authMethod: z.enum(['operator_key', 'api_key', 'jwt']),
    permissions: z.array(z.string()),
  })
  .openapi('Me');

const httpsOrLoopback = z.url().refine((value) => {
  const url = new URL(value);
  return url.protocol === 'https:' || ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
}, 'must be https (http only for localhost)');

export const createOidcProviderSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100),
    issuer: z.string().min(1).max(2048),
    audience: z.string().min(1).max(2048),
    jwksUrl: httpsOrLoopback.optional(),
    publicKeysPem: z
      .array(
        z
          .string()
          .trim()
          .superRefine((pem, context) => {
            const parsed = parsePublicKeyPem(pem);
            if ('problem' in parsed) context.addIssue({ code: 'custom', message: parsed.problem });
          }),
      )
      .min(1)
      .max(10)
      .optional()
      .openapi({
        description:
          'SPKI public keys in PEM (`-----BEGIN PUBLIC KEY-----`): RSA of at least 2,048 bits (RS*, PS*), EC P-256, P-384 or P-521 (ES256, ES384, ES512), Ed25519 (EdDSA). At least one key must verify one of `algorithms`.',
      }),
    algorithms: z.array(z.enum(oidcAlgorithms)).min(1).default(['RS256']),
    subjectClaim: z.string().min(1).max(100).default('sub'),
    emailClaim: z.string().min(1).max(100).default('email'),
    nameClaim: z.string().min(1).max(100).default('name'),
    roleClaim: z.string().min(1).max(100).nullable().default(null),
    roleMapping: withoutProtoKeys(
      z.record(z.string(), z.enum(['admin', 'member', 'viewer'])),
    ).default({}),
    defaultRole: z.enum(['admin', 'member', 'viewer']).default('member'),
    jitProvisioning: z.boolean().default(false),
    enabled: z.boolean().default(true),
  })
  .refine((value) => (value.jwksUrl === undefined) !== (value.publicKeysPem === undefined), {
    message: 'exactly one of jwksUrl and publicKeysPem is required',
    path: ['jwksUrl'],
  })
  .superRefine((value, context) => {
    const problem =
      value.publicKeysPem === undefined
        ? undefined
        : algorithmsProblem(value.publicKeysPem, value.algorithms);
    if (problem !== undefined)
      context.addIssue({ code: 'custom', message: problem, path: ['algorithms'] });
  })
  .openapi('CreateOidcProviderRequest');

export const oidcProviderSchema = z
  .object({
    id: z.uuid(),
    tenantId: z.uuid(),
    name: z.string(),
    issuer: z.string(),
    audience: z.string(),
    jwksUrl: z.string().nullable(),
    publicKeysPem: z.array(z.string()).nullable(),
    algorithms: z.array(z.string()),
    subjectClaim: z.string(),
    emailClaim: z.string(),
    nameClaim: z.string(),
    roleClaim: z.string().nullable(),
    roleMapping: z.record(z.string(), z.string()),
    defaultRole: z.enum(['admin', 'member', 'viewer']),
    jitProvisioning: z.boolean(),
    enabled: z.boolean(),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .openapi('OidcProvider');

/**
 * An RFC 9457 problem document. Problem types add members of their own (RFC 9457 §3.2), so the
 * object is open; the members several codes share are declared.
 */
export const problemSchema = z
  .looseObject({
    type: z.string(),
    title: z.string(),
    status: z.int(),
    code: z.string().openapi({ description: 'Stable error code; clients branch on it.' }),
    detail: z.string(),
    instance: z.string().optional(),
    requestId: z.string().optional(),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .openapi({
        description:
          '`validation_failed`: each offending field, at most 100, then one entry saying how many more there are.',
      }),
    retryAfterSeconds: z.number().optional().openapi({
      description:
        'When to retry, also sent as `Retry-After` (`rate_limited`, `quota_exceeded`, `queue_full`, `service_unavailable`).',
    }),
    limitScope: z.string().optional().openapi({
      description: '`rate_limited`: the limit that refused: `key`, `user`, `tenant` or `policy`.',
    }),
    policyId: z.string().optional().openapi({
      description: 'The policy whose limit refused (`rate_limited`, `quota_exceeded`).',
    }),
    routes: z.array(z.string()).optional().openapi({
      description: '`route_in_use`: the names of the tenant routes that fall back to the route.',
    }),
    agents: z.array(z.string()).optional().openapi({
      description:
        '`route_in_use`: the names of the agents whose model (or degradation model) is the route.',
    }),
  })
  .openapi('Problem', {
    description:
      'RFC 9457 problem details. Members not declared here may be added by a problem type; ignore those you do not know.',
  });

const iso = (date: Date | null): string | null => (date === null ? null : date.toISOString());

/** Renders a tenant for the API. */
export const tenantResponse = (tenant: Tenant) => ({
  ...tenant,
  metadata: { ...tenant.metadata },
  createdAt: tenant.createdAt.toISOString(),
  updatedAt: tenant.updatedAt.toISOString(),
});

/** Renders a user for the API. */
export const userResponse = (user: User) => ({
  ...user,
  metadata: { ...user.metadata },
  createdAt: user.createdAt.toISOString(),
  updatedAt: user.updatedAt.toISOString(),
});

/** Renders API key metadata for the API (never the hash or secret). */
export const apiKeyResponse = (key: ApiKey, now: Date = new Date()) => ({
  ...key,
  scopes: key.scopes === null ? null : [...key.scopes],
  status:
    key.revokedAt !== null && key.revokedAt <= now
      ? ('revoked' as const)
      : key.expiresAt !== null && key.expiresAt <= now
        ? ('expired' as const)
        : ('active' as const),
  expiresAt: iso(key.expiresAt),
  lastUsedAt: iso(key.lastUsedAt),
  revokedAt: iso(key.revokedAt),
  createdAt: key.createdAt.toISOString(),
});

/** Renders an OIDC provider for the API. */
export const oidcProviderResponse = (provider: OidcProvider) => ({
  ...provider,
  publicKeysPem: provider.publicKeysPem === null ? null : [...provider.publicKeysPem],
  algorithms: [...provider.algorithms],
  roleMapping: { ...provider.roleMapping },
  createdAt: provider.createdAt.toISOString(),
  updatedAt: provider.updatedAt.toISOString(),
});
