import type { MigrationContext } from './migration-context.ts';

/**
 * A credential may name the hosts it may be sent to (`allowed_hosts`, `host` or `host:port`);
 * null sends it wherever the tenant's tools and MCP servers that name it go. The tool gate
 * checks the destination before it decrypts the secret: a member who pins their credential to
 * its service's host cannot have it sent elsewhere by a tool an admin defines or changes.
 */
export function credentialAllowedHostsMigration(_context: MigrationContext): string {
  return `
alter table brigade.credentials
  add column allowed_hosts text[]
    check (allowed_hosts is null or cardinality(allowed_hosts) between 1 and 20);
`;
}
