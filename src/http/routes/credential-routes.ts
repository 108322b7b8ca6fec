import { z } from '@hono/zod-openapi';
import { oauthClientAuthMethods } from '../../domain/tools/oauth-types.ts';
import type { CredentialInput, CredentialMetadata } from '../../storage/tools/credential-store.ts';
import { credentialKinds } from '../../storage/tools/credential-store.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse, problemResponse } from '../route-helpers.ts';

const credentialSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    kind: z.enum(credentialKinds),
    scope: z.enum(['user', 'tenant']),
    fingerprint: z
      .string()
      .openapi({ description: 'First 12 hex characters of SHA-256 of the secret.' }),
    last4: z
      .string()
      .openapi({ description: 'Last four characters (empty for secrets under 16 characters).' }),
    createdAt: z.iso.datetime(),
    allowedHosts: z.array(z.string()).nullable().openapi({
      description: 'The only hosts the credential may be sent to; null: wherever tools send it.',
    }),
    oauth2: z
      .object({
        expiresAt: z.iso.datetime().nullable(),
        refreshedAt: z.iso.datetime().nullable(),
        status: z.enum(['active', 'reauthorization_required']).openapi({
          description:
            '`reauthorization_required` once the token server refused the refresh token: put the credential again.',
        }),
        refreshFailedAt: z.iso.datetime().nullable(),
      })
      .optional()
      .openapi({ description: 'Only for `oauth2` credentials: state, never a token.' }),
  })
  .openapi('Credential');

function withoutControlCharacters(value: string): boolean {
  for (let index = 0; index < value.length; index += 1) {
    const code = value.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return false;
  }
  return true;
}

const token = z
  .string()
  .min(1)
  .max(8_192)
  // Secrets travel in HTTP headers, where a line break or NUL is refused at call time (or
  // would split the header): refused when stored instead.
  .refine(withoutControlCharacters, 'may not contain control characters (line breaks, tabs)');
/** `host` or `host:port`: a DNS name or IPv4 address, or a bracketed IPv6 address. */
const hostPattern =
  /^(\[[0-9a-f:.]+\]|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*)(:\d{1,5})?$/;
/** The port of a `host:port` entry, or undefined when it has none. */
function portOf(host: string): number | undefined {
  const match = /:(\d{1,5})$/.exec(host);
  return match === null || host.endsWith(']') ? undefined : Number(match[1]);
}
const oauthFields = [
  'accessToken',
  'refreshToken',
  'expiresAt',
  'expiresIn',
  'tokenUrl',
  'clientId',
  'clientSecret',
  'clientSecretCredential',
  'clientAuthMethod',
  'scope',
] as const;

const putCredentialSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'lower-case letters, digits, . _ -')
      .openapi({
        description: 'Tools name the credential they need by this name.',
        example: 'github',
      }),
    kind: z.enum(credentialKinds).default('bearer_token').openapi({
      description:
        '`bearer_token` or `api_key` (sent as a bearer token or a header, as the tool says), `basic` (`user:password`), `oauth2` (an access token Brigade refreshes; sent as the tool says, normally `bearer`).',
    }),
    allowedHosts: z
      .array(
        z
          .string()
          .max(260)
          .transform((host) => host.toLowerCase())
          .pipe(
            z
              .string()
              .regex(hostPattern, 'must be a host or host:port')
              .refine((host) => {
                const port = portOf(host);
                return port === undefined || (port >= 1 && port <= 65_535);
              }, 'the port must be 1–65535'),
          ),
      )
      .min(1)
      .max(20)
      .refine((hosts) => new Set(hosts).size === hosts.length, 'each host once')
      .optional()
      .openapi({
        description:
          'The only hosts (`host` or `host:port`) this credential may be sent to: a tool or MCP server calling any other host (or a local stdio server) fails with `credential_host_not_allowed` and never gets the secret. Absent: wherever the tenant’s tools that name it go (tools are defined by the tenant’s owners and admins).',
        example: ['api.github.com'],
      }),
    secret: token.optional().openapi({
      description:
        'The secret of `bearer_token`, `api_key` and `basic`. Encrypted at rest (AES-256-GCM envelope); never returned, logged or shown to a model.',
    }),
    accessToken: token.optional().openapi({ description: '`oauth2`: the current access token.' }),
    refreshToken: token.optional().openapi({ description: '`oauth2`: the refresh token.' }),
    expiresAt: z.iso
      .datetime({ offset: true })
      .optional()
      .openapi({ description: '`oauth2`: when the access token expires (or `expiresIn`).' }),
    expiresIn: z
      .int()
      .min(0)
      .max(10 * 365 * 86_400)
      .optional()
      .openapi({ description: '`oauth2`: seconds until the access token expires.' }),
    tokenUrl: z.string().max(2_048).optional().openapi({
      description:
        '`oauth2`: the token endpoint; https (http only where private networks are allowed), checked like tool URLs.',
    }),
    clientId: z.string().min(1).max(512).optional().openapi({ description: '`oauth2`.' }),
    clientSecret: token.optional().openapi({
      description:
        '`oauth2`: the client secret, sealed with the tokens (or `clientSecretCredential`).',
    }),
    clientSecretCredential: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/)
      .optional()
      .openapi({
        description:
          "`oauth2`: the name of the tenant's shared credential holding the client secret.",
      }),
    clientAuthMethod: z.enum(oauthClientAuthMethods).optional().openapi({
      description:
        '`oauth2`: how the client authenticates at the token endpoint (default `client_secret_basic`).',
    }),
    scope: z.string().min(1).max(1_024).optional().openapi({
      description: '`oauth2`: the scope to ask for when refreshing.',
    }),
  })
  .superRefine((body, context) => {
    const issue = (path: string, message: string) =>
      context.addIssue({ code: 'custom', path: [path], message });
    if (body.kind !== 'oauth2') {
      if (body.secret === undefined) issue('secret', 'required');
      if (body.kind === 'basic' && body.secret !== undefined && !body.secret.includes(':'))
        issue('secret', "a basic credential is 'user:password' (with the colon)");
      for (const field of oauthFields)
        if (body[field] !== undefined) issue(field, 'only for oauth2 credentials');
      return;
    }
    if (body.secret !== undefined) issue('secret', 'oauth2 credentials take accessToken');
    for (const field of ['accessToken', 'refreshToken', 'tokenUrl', 'clientId'] as const)
      if (body[field] === undefined) issue(field, 'required for oauth2 credentials');
    if ((body.expiresAt === undefined) === (body.expiresIn === undefined))
      issue('expiresAt', 'give exactly one of expiresAt and expiresIn');
    if (body.clientSecret !== undefined && body.clientSecretCredential !== undefined)
      issue('clientSecret', 'give clientSecret or clientSecretCredential, not both');
  })
  .openapi('PutCredential');

type PutCredentialBody = z.infer<typeof putCredentialSchema>;

/** The vault's input from a validated body (an OAuth expiry in seconds becomes a time). */
function toInput(
  body: PutCredentialBody,
): CredentialInput & { name: string; allowedHosts?: readonly string[] | undefined } {
  const hosts = body.allowedHosts === undefined ? {} : { allowedHosts: body.allowedHosts };
  if (body.kind !== 'oauth2')
    return { name: body.name, kind: body.kind, secret: body.secret ?? '', ...hosts };
  const expiresAt =
    body.expiresAt === undefined
      ? new Date(Date.now() + (body.expiresIn ?? 0) * 1000)
      : new Date(body.expiresAt);
  return {
    name: body.name,
    kind: 'oauth2',
    ...hosts,
    expiresAt,
    oauth: {
      tokenUrl: body.tokenUrl ?? '',
      clientId: body.clientId ?? '',
      clientAuthMethod: body.clientAuthMethod ?? 'client_secret_basic',
      ...(body.scope === undefined ? {} : { scope: body.scope }),
      ...(body.clientSecretCredential === undefined
        ? {}
        : { clientSecretCredential: body.clientSecretCredential }),
    },
    secrets: {
      accessToken: body.accessToken ?? '',
      refreshToken: body.refreshToken ?? '',
      ...(body.clientSecret === undefined ? {} : { clientSecret: body.clientSecret }),
    },
  };
}

const list = z.object({ data: z.array(credentialSchema) });
const params = z.object({ credentialId: idParam('credentialId') });

function toResponse(credential: CredentialMetadata) {
  const { oauth2, ...rest } = credential;
  const iso = (date: Date | null) => date?.toISOString() ?? null;
  return {
    ...rest,
    allowedHosts: credential.allowedHosts === null ? null : [...credential.allowedHosts],
    createdAt: credential.createdAt.toISOString(),
    ...(oauth2 === undefined
      ? {}
      : {
          oauth2: {
            status: oauth2.status,
            expiresAt: iso(oauth2.expiresAt),
            refreshedAt: iso(oauth2.refreshedAt),
            refreshFailedAt: iso(oauth2.refreshFailedAt),
          },
        }),
  };
}

const routes = (shared: boolean) => {
  const base = shared ? '/v1/credentials' : '/v1/me/credentials';
  const tags = ['Credentials'];
  const whose = shared
    ? "your tenant's shared credentials (owners and admins)"
    : 'your own credentials';
  return {
    put: authedRoute({
      method: 'post',
      path: base,
      operationId: shared ? 'putSharedCredential' : 'putCredential',
      tags,
      summary: `Store a secret or OAuth 2.0 tokens among ${whose}; one of the same name is replaced`,
      request: { body: jsonBody(putCredentialSchema) },
      responses: {
        201: jsonResponse(credentialSchema, 'The credential (metadata only).'),
        503: problemResponse(
          'The vault has no master key (`vault_unavailable`), or the server is overloaded (`service_unavailable`).',
          { retry: true },
        ),
      },
    }),
    list: authedRoute({
      method: 'get',
      path: base,
      operationId: shared ? 'listSharedCredentials' : 'listCredentials',
      tags,
      summary: `List ${whose}: name, kind, fingerprint, last four characters — never the secret`,
      responses: { 200: jsonResponse(list, 'Credentials.') },
    }),
    remove: authedRoute({
      method: 'delete',
      path: `${base}/{credentialId}`,
      operationId: shared ? 'deleteSharedCredential' : 'deleteCredential',
      tags,
      summary: `Delete one of ${whose}`,
      request: { params },
      responses: { 204: { description: 'Deleted.' } },
    }),
  };
};

/** Registers the credentials vault operations (the caller's own, and the tenant's shared). */
export function registerCredentialRoutes(app: BrigadeApp, services: RouteServices): void {
  for (const shared of [false, true]) {
    const route = routes(shared);
    app.openapi(route.put, async (context) => {
      const created = await services.credentials.put(
        context.get('principal'),
        toInput(context.req.valid('json')),
        shared,
      );
      return context.json(toResponse(created), 201);
    });
    app.openapi(route.list, async (context) => {
      const credentials = await services.credentials.list(context.get('principal'), shared);
      return context.json({ data: credentials.map(toResponse) }, 200);
    });
    app.openapi(route.remove, async (context) => {
      await services.credentials.delete(
        context.get('principal'),
        context.req.valid('param').credentialId,
        shared,
      );
      return context.body(null, 204);
    });
  }
}
