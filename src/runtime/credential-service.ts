import { asTenantUser } from '../domain/agents/agent-service.ts';
import { AppError, NotFoundError, ValidationError } from '../domain/errors.ts';
import { assertCan, type Principal } from '../domain/identity/principal.ts';
import type {
  CredentialInput,
  CredentialMetadata,
  CredentialStore,
} from '../storage/tools/credential-store.ts';
import type { EgressPolicy } from './tools/egress-guard.ts';
import { assertTokenUrlAllowed, tokenUrlProblems } from './tools/oauth-token-client.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function credentialNotFound(): NotFoundError {
  return new NotFoundError('credential_not_found', 'Credential not found.');
}

/** Refuses an OAuth token endpoint the tools' egress rules would refuse (422, `tokenUrl`). */
async function checkTokenUrl(tokenUrl: string, egress: EgressPolicy): Promise<void> {
  const problems = tokenUrlProblems(tokenUrl, egress);
  if (problems.length === 0)
    await assertTokenUrlAllowed(tokenUrl, egress).catch((error: unknown) => {
      problems.push((error as Error).message);
    });
  if (problems.length > 0)
    throw new ValidationError(problems.map((message) => ({ path: 'tokenUrl', message })));
}

/** A credential that was stored (perhaps replacing one of its name) or deleted. */
export interface ChangedCredential {
  readonly tenantId: string;
  /** Its owner; undefined: the tenant's shared one. */
  readonly userId: string | undefined;
  readonly name: string;
}

/**
 * The vault's API side: users keep their own credentials (`credential:manage-own`), owners and
 * admins keep the tenant's shared ones (`tool:manage`). Only metadata ever comes back. An
 * OAuth credential's token endpoint must pass the tools' egress rules (`egress`).
 */
export function createCredentialService(options: {
  readonly store: CredentialStore;
  readonly egress: EgressPolicy;
  /**
   * Called after a credential of a name was stored or deleted: what was started with its old
   * value (stdio MCP server processes) is closed.
   */
  readonly onChange?: (credential: ChangedCredential) => void;
}) {
  const { store } = options;
  function ready(): void {
    if (!store.available)
      throw new AppError(
        'vault_unavailable',
        'The credentials vault has no master key; the operator must set BRIGADE_MASTER_KEY.',
      );
  }
  function userFor(principal: Principal, shared: boolean) {
    const user = asTenantUser(principal);
    assertCan(user, shared ? 'tool:manage' : 'credential:manage-own');
    return user;
  }
  return {
    async put(
      principal: Principal,
      input: CredentialInput & {
        readonly name: string;
        readonly allowedHosts?: readonly string[] | undefined;
      },
      shared: boolean,
    ): Promise<CredentialMetadata> {
      const user = userFor(principal, shared);
      ready();
      if (input.kind === 'oauth2') {
        // A user's own credential names its token URL, so it must not be able to make Brigade
        // send the tenant's shared client secret there.
        if (!shared && input.oauth.clientSecretCredential !== undefined) {
          throw new ValidationError([
            {
              path: 'clientSecretCredential',
              message:
                "only a shared credential can use the tenant's shared client secret; give your own credential its clientSecret",
            },
          ]);
        }
        await checkTokenUrl(input.oauth.tokenUrl, options.egress);
      }
      const stored = await store.put(user, { ...input, shared });
      options.onChange?.({
        tenantId: user.tenantId,
        userId: shared ? undefined : user.userId,
        name: stored.name,
      });
      return stored;
    },
    async list(principal: Principal, shared: boolean): Promise<CredentialMetadata[]> {
      return store.list(userFor(principal, shared), shared);
    },
    async delete(principal: Principal, credentialId: string, shared: boolean): Promise<void> {
      const user = userFor(principal, shared);
      const name = uuidPattern.test(credentialId)
        ? await store.delete(user, credentialId, shared)
        : undefined;
      if (name === undefined) throw credentialNotFound();
      options.onChange?.({
        tenantId: user.tenantId,
        userId: shared ? undefined : user.userId,
        name,
      });
    },
  };
}

/** The credential service's type. */
export type CredentialService = ReturnType<typeof createCredentialService>;
