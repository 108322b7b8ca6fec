import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import type { BindingLimit } from './policy-cache.ts';
import { createRequestLimiter } from './request-limiter.ts';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const subject = { tenantId: 't1', userId: 'u1', keyId: 'k1' };

function limiter() {
  return createRequestLimiter({
    perKey: 1_000_000,
    perUser: 1_000_000,
    perTenant: 1_000_000,
    redis: undefined,
    onStoreError: (error) => {
      throw error;
    },
  });
}

function policy(policyId: string, limit: number): BindingLimit {
  return { policyId, level: 'user', limit, counterKey: 'u:u1' };
}

describe('the request limiter', () => {
  it('refuses past a policy limit, per policy, and says what is left', async () => {
    const requests = limiter();
    const first = await requests.consume(subject, [policy('p1', 2), policy('p2', 5)]);
    expect(first).toMatchObject({ allowed: true, limit: 2, remaining: 1 });
    expect(await requests.consume(subject, [policy('p1', 2)])).toMatchObject({ allowed: true });
    const refused = await requests.consume(subject, [policy('p1', 2), policy('p2', 5)]);
    expect(refused).toMatchObject({ allowed: false, scope: 'policy', policyId: 'p1', limit: 2 });
    expect(refused.resetSeconds).toBeGreaterThan(0);
    // p2 kept only the request p1 let through (the refused one was given back), and another
    // policy of the same size counts apart.
    expect(await requests.consume(subject, [policy('p2', 5)])).toMatchObject({ remaining: 3 });
    expect(await requests.consume(subject, [policy('p3', 2)])).toMatchObject({ remaining: 1 });
  });

  it('keeps nothing per distinct limit a policy was ever given', async () => {
    // Tenant admins set a policy's limit to whatever they like, as often as they like.
    const requests = limiter();
    const heapUsed = async () => {
      await new Promise((resolve) => setTimeout(resolve, 0));
      collectGarbage();
      return process.memoryUsage().heapUsed;
    };
    for (let limit = 1; limit <= 200; limit += 1)
      await requests.consume(subject, [policy('p1', 1_000_000 + limit)]);
    const before = await heapUsed();
    for (let limit = 1; limit <= 20_000; limit += 1)
      await requests.consume(subject, [policy('p1', 2_000_000 + limit)]);
    // A limiter per distinct limit cost ~1 KB each: 20,000 of them ~20 MB.
    expect((await heapUsed()) - before).toBeLessThan(4 * 1024 * 1024);
  });

  it('counts narrow limits first: a burst an agent limit refuses leaves the tenant to the others', async () => {
    const requests = createRequestLimiter({
      perKey: 1_000_000,
      perUser: 1_000_000,
      perTenant: 10,
      redis: undefined,
      onStoreError: (error) => {
        throw error;
      },
    });
    const agentLimit: BindingLimit = {
      policyId: 'pa',
      level: 'agent',
      limit: 1,
      counterKey: 'a:agent1',
    };
    const burst = await Promise.all(
      Array.from({ length: 20 }, () =>
        requests.consume({ tenantId: 't1', userId: 'uA', keyId: 'kA' }, [agentLimit]),
      ),
    );
    expect(burst.filter((decision) => decision.allowed)).toHaveLength(1);
    expect(burst.every((decision) => decision.allowed || decision.scope === 'policy')).toBe(true);
    // The tenant served one request of ten: another user has nine.
    const other = await requests.consume({ tenantId: 't1', userId: 'uB', keyId: 'kB' }, []);
    expect(other).toMatchObject({ allowed: true, remaining: 8 });
  });
});
