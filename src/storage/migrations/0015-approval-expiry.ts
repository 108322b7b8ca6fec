/**
 * Approval expiry and kill switches for MCP tools (issue 6).
 *
 * - `run_queue.wake_at`: when a parked run's pending approval expires. The approval gate sets
 *   it when it parks the run; the expiry sweep (scheduler scope, which sees only the ids-only
 *   queue, never an approval's arguments) takes parked entries whose time has come with
 *   `for update skip locked` and expires their approvals in the run's user's scope. Entries
 *   parked before this migration have no time and are looked at once.
 * - `tool_blocks.tool_name` also accepts `mcp:<server>:<tool>` (the names agents give MCP
 *   tools), so a kill switch can refuse one tool of an MCP server.
 */
export function approvalExpiryMigration(): string {
  return `
alter table brigade.run_queue add column wake_at timestamptz;
create index run_queue_wake on brigade.run_queue (wake_at) where state = 'parked';

alter table brigade.tool_blocks drop constraint tool_blocks_tool_name_check;
alter table brigade.tool_blocks add constraint tool_blocks_tool_name_check
  check (tool_name ~ '^[a-z][a-z0-9_]{0,63}$'
         or tool_name ~ '^mcp:[a-z][a-z0-9_-]{0,31}:[A-Za-z0-9_.-]{1,64}$');
`;
}
