/**
 * Tools that need the user's consent. An agent lists tools whose calls need the calling user's
 * `tool:<tool name>` consent (`consent_required_tools`, beside `approval_required_tools`); a
 * tenant's HTTP tool says so in its definition (`requiresConsent`, in the `definition` jsonb).
 * MCP tools are named `mcp:<server>:<tool>`, which the purpose check refused: it now also
 * accepts `tool:mcp:<server>:<tool>`, so every tool's purpose is `tool:` and its name.
 */
export function toolConsentsMigration(): string {
  return `
alter table brigade.agents
  add column consent_required_tools text[] not null default '{}';
alter table brigade.consents drop constraint consents_purpose_check;
alter table brigade.consents add constraint consents_purpose_check
  check (purpose ~ '^(content_capture|long_term_memory|tool:[a-z][a-z0-9_]{0,63}|tool:mcp:[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.-]{1,64})$');
`;
}
