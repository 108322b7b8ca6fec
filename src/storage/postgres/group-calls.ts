import pg from 'pg';

/** Options of {@link createGroupCalls}. */
export interface GroupCallOptions<I, O> {
  /** Makes one call alone (its own transaction). */
  one(item: I): Promise<O>;
  /** Makes several calls in one transaction; one result per item, in order. */
  many(items: readonly I[]): Promise<readonly O[]>;
  /** The order a batch is sent in (so batches of two processes lock rows in one order). */
  compare(left: I, right: I): number;
  /** Most calls in one batch. */
  readonly maxBatch: number;
}

/** Calls grouped per lane: see {@link createGroupCalls}. */
export interface GroupCalls<I, O> {
  call(lane: string, item: I): Promise<O>;
}

interface Pending<I, O> {
  readonly item: I;
  readonly resolve: (value: O) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Group commit. A call whose lane (a tenant) has no batch in flight goes out at once, alone;
 * calls that arrive while one is in flight wait for it and then go out together, as one
 * statement and one transaction. At concurrency 1 nothing changes; under load, N calls that
 * would each have waited for the previous one's row locks and commit cost one round trip. Lanes
 * are independent, so one tenant's slow batch never holds up another tenant's calls.
 *
 * A batch the server refused (a deadlock with another process's batch, any error it
 * reported) was rolled back whole (after `callPrepared`'s own retries of a deadlock), so its
 * calls are made again one by one and each gets its own answer. Any other failure (the connection broke: whether it committed is unknown) is
 * every call's failure, as it would have been for a call made alone.
 */
export function createGroupCalls<I, O>(options: GroupCallOptions<I, O>): GroupCalls<I, O> {
  const lanes = new Map<string, Pending<I, O>[]>();

  async function send(batch: Pending<I, O>[]): Promise<void> {
    if (batch.length === 1) {
      const [only] = batch as [Pending<I, O>];
      await options.one(only.item).then(only.resolve, only.reject);
      return;
    }
    batch.sort((left, right) => options.compare(left.item, right.item));
    let results: readonly O[];
    try {
      results = await options.many(batch.map((pending) => pending.item));
    } catch (error) {
      if (!(error instanceof pg.DatabaseError)) {
        for (const pending of batch) pending.reject(error);
        return;
      }
      await Promise.all(
        batch.map((pending) => options.one(pending.item).then(pending.resolve, pending.reject)),
      );
      return;
    }
    batch.forEach((pending, index) => {
      if (index < results.length) pending.resolve(results[index] as O);
      else pending.reject(new Error('a batched call returned fewer results than calls'));
    });
  }

  async function drain(lane: string, waiting: Pending<I, O>[]): Promise<void> {
    while (waiting.length > 0) await send(waiting.splice(0, options.maxBatch));
    lanes.delete(lane);
  }

  return {
    call(lane, item) {
      return new Promise<O>((resolve, reject) => {
        const waiting = lanes.get(lane);
        if (waiting !== undefined) {
          waiting.push({ item, resolve, reject });
          return;
        }
        const fresh: Pending<I, O>[] = [{ item, resolve, reject }];
        lanes.set(lane, fresh);
        void drain(lane, fresh);
      });
    },
  };
}
