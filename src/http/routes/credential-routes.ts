import { z } from '@hono/zod-openapi';
import type { CredentialMetadata } from '../../storage/tools/credential-store.ts';
import { credentialKinds } from '../../storage/tools/credential-store.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, idParam, jsonBody, jsonResponse } from '../route-helpers.ts';

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
  })
  .openapi('Credential');

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
        '`bearer_token` or `api_key` (sent as a bearer token or a header, as the tool says), `basic` (`user:password`).',
    }),
    secret: z.string().min(1).max(8_192).openapi({
      description:
        'Encrypted at rest (AES-256-GCM envelope); never returned, logged or shown to a model.',
    }),
  })
  .openapi('PutCredential');

const list = z.object({ data: z.array(credentialSchema) });
const params = z.object({ credentialId: idParam('credentialId') });

function toResponse(credential: CredentialMetadata) {
  return { ...credential, createdAt: credential.createdAt.toISOString() };
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
      summary: `Store a secret among ${whose}; one of the same name is replaced`,
      request: { body: jsonBody(putCredentialSchema) },
      responses: {
        201: jsonResponse(credentialSchema, 'The credential (metadata only).'),
        503: jsonResponse(z.object({}), 'The vault has no master key.'),
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
        context.req.valid('json'),
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
