/**
 * An agent's history window: `history_messages` caps how many of a thread's earlier messages
 * each run sends to the model (null: no cap; the run's own input always goes). The run loader
 * reads only that many (and one more, to know a cut happened) instead of the whole thread.
 */
export function agentHistoryWindowMigration(): string {
  return `
alter table brigade.agents
  add column history_messages int
    check (history_messages between 1 and 10000);
`;
}
