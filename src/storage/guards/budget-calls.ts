import type { Database } from '../postgres/database.ts';
import { createGroupCalls } from '../postgres/group-calls.ts';
import type { ReserveResult } from './budget-store.ts';

/** The prepared calls of migration 0014's budget functions. */
const reserveStatement = {
  name: 'brigade_reserve_call',
  text: 'select res, reservation_id from brigade.reserve_call($1, $2, $3, $4, $5, $6, $7, $8)',
};
const settleStatement = {
  name: 'brigade_settle_call',
  text: 'select brigade.settle_call($1, $2, $3, $4, $5, $6) as crossed',
};
/** The batched forms (migration 0019): several calls of one tenant in one transaction. */
const reserveManyStatement = {
  name: 'brigade_reserve_calls',
  text: 'select ord, res, reservation_id from brigade.reserve_calls($1) order by ord',
};
const settleManyStatement = {
  name: 'brigade_settle_calls',
  text: 'select ord, crossed from brigade.settle_calls($1) order by ord',
};

/** Most calls one batched reservation or settlement carries. */
const maxBatch = 64;

export interface ReserveCall {
  readonly tenant: string;
  readonly user: string;
  readonly amount: number;
  readonly key: string | null;
  readonly agent: string | null;
  readonly id: string;
  readonly run: string | null;
  readonly expires: Date;
}

export interface SettleCall {
  readonly tenant: string;
  readonly user: string;
  readonly reservation: string | null;
  readonly cost: number;
  readonly status: 'settled' | 'released';
  readonly usage: readonly Record<string, unknown>[];
}

export interface ReserveRow {
  readonly res: ReserveResult;
  readonly reservation_id: string | null;
}

/** Orders a batch by user, key and agent: the order its calls take counter locks in. */
function bySpender(
  left: { user: string; key?: string | null; agent?: string | null },
  right: { user: string; key?: string | null; agent?: string | null },
): number {
  const keys = (call: typeof left) => `${call.user}/${call.key ?? ''}/${call.agent ?? ''}`;
  const [a, b] = [keys(left), keys(right)];
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * How reservations and settlements reach PostgreSQL: `reserve_call` / `settle_call`
 * (migration 0014) for a call alone, and group commit per tenant (0019) for the calls that
 * queue up while their tenant's previous batch is in flight, which go out together as one
 * `reserve_calls` / `settle_calls`. A call with nothing in flight goes out at once.
 */
export function createBudgetCalls(database: Pick<Database, 'callPrepared'>) {
  const reservations = createGroupCalls<ReserveCall, ReserveRow | undefined>({
    maxBatch,
    compare: bySpender,
    async one(call) {
      const rows = await database.callPrepared(reserveStatement, [
        call.tenant,
        call.user,
        call.amount,
        call.key,
        call.agent,
        call.id,
        call.run,
        call.expires,
      ]);
      return rows[0] as ReserveRow | undefined;
    },
    async many(calls) {
      const rows = await database.callPrepared(reserveManyStatement, [JSON.stringify(calls)]);
      return rows as unknown as ReserveRow[];
    },
  });
  const settlements = createGroupCalls<SettleCall, number>({
    maxBatch,
    compare: bySpender,
    async one(call) {
      const [row] = await database.callPrepared(settleStatement, [
        call.tenant,
        call.user,
        call.reservation,
        call.cost,
        call.status,
        JSON.stringify(call.usage),
      ]);
      return Number(row?.['crossed'] ?? 0);
    },
    async many(calls) {
      const rows = await database.callPrepared(settleManyStatement, [JSON.stringify(calls)]);
      return rows.map((row) => Number(row['crossed'] ?? 0));
    },
  });

  return {
    reserve: (call: ReserveCall) => reservations.call(call.tenant, call),
    settle: (call: SettleCall) => settlements.call(call.tenant, call),
  };
}
