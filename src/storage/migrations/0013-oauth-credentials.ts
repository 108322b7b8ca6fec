import type { MigrationContext } from './migration-context.ts';

/**
 * OAuth 2.0 credentials (issue 6): a credential of kind `oauth2` keeps its token material
 * (access token, refresh token, inline client secret) sealed in `ciphertext` like every other
 * secret; the new columns hold what is not secret.
 *
 * - `oauth`: the token endpoint, client id, scope, client authentication method and the name
 *   of a tenant-shared credential holding the client secret (never a secret itself).
 * - `expires_at`, `refreshed_at`: when the access token expires, when it was last refreshed.
 * - `refresh_failure`, `refresh_failed_at`: set when the token server refused the refresh
 *   token (`invalid_grant`): the owner must re-authorise (put the credential again).
 *
 * A refresh rewrites the sealed tokens and these columns under a row lock (`select … for
 * update`), so the runtime role gets UPDATE on exactly those columns: on the user's own rows
 * (the existing `credentials_own` policy covers every command), and on the tenant's shared
 * `oauth2` rows only while a tool call executes (`brigade.tool_execution`), never over the API.
 */
export function oauthCredentialsMigration({ runtimeRole }: MigrationContext): string {
  const role = `"${runtimeRole}"`;
  const tenant = 'tenant_id = (select brigade.current_tenant_id())';
  const toolExecution = `coalesce(current_setting('brigade.tool_execution', true), '') = 'on'`;
  return `
alter table brigade.credentials
  add column oauth jsonb check (oauth is null or jsonb_typeof(oauth) = 'object'),
  add column expires_at timestamptz,
  add column refreshed_at timestamptz,
  add column refresh_failure text check (refresh_failure in ('reauthorization_required')),
  add column refresh_failed_at timestamptz,
  add constraint credentials_oauth_settings check ((kind = 'oauth2') = (oauth is not null));
create policy credentials_shared_refresh on brigade.credentials for update
  using (${tenant} and user_id is null and kind = 'oauth2' and ${toolExecution})
  with check (${tenant} and user_id is null and kind = 'oauth2' and ${toolExecution});
grant update (ciphertext, fingerprint, last4, expires_at, refreshed_at, refresh_failure,
              refresh_failed_at)
  on brigade.credentials to ${role};
`;
}
