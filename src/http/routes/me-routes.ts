import { actions } from '../../domain/identity/permissions.ts';
import { permittedActions } from '../../domain/identity/principal.ts';
import type { BrigadeApp, RouteServices } from '../app-env.ts';
import { authedRoute, jsonResponse } from '../route-helpers.ts';
import { meSchema, tenantResponse, userResponse } from '../schemas.ts';

const getMe = authedRoute({
  method: 'get',
  path: '/v1/me',
  operationId: 'getMe',
  tags: ['Identity'],
  summary: 'Who the presented credential is: tenant, user, role and permitted actions',
  responses: { 200: jsonResponse(meSchema, 'The caller.') },
});

/** Registers `getMe`. */
export function registerMeRoutes(app: BrigadeApp, services: RouteServices): void {
  app.openapi(getMe, async (context) => {
    const principal = context.get('principal');
    if (principal.kind === 'operator') {
      return context.json(
        {
          kind: 'operator' as const,
          tenant: null,
          user: null,
          keyId: null,
          authMethod: 'operator_key' as const,
          permissions: ['platform:operate', ...actions],
        },
        200,
      );
    }
    const [tenant, user] = await Promise.all([
      services.identity.getTenant(principal, principal.tenantId),
      services.identity.getUser(principal, principal.tenantId, principal.userId),
    ]);
    return context.json(
      {
        kind: 'user' as const,
        tenant: tenantResponse(tenant),
        user: userResponse(user),
        keyId: principal.keyId ?? null,
        authMethod: principal.authMethod,
        permissions: [...permittedActions(principal)],
      },
      200,
    );
  });
}
