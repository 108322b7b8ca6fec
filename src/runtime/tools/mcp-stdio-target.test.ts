import { describe, expect, it } from 'vitest';
import { createCloseLog, targetMatches } from './mcp-stdio-target.ts';

const owner = { tenantId: 't', userId: 'u', serverId: 's', credential: 'github' };

describe('close targets', () => {
  it('names a process by every field given, ids in any case', () => {
    expect(targetMatches({ tenantId: 'T' }, owner)).toBe(true);
    expect(targetMatches({ tenantId: 't', userId: 'U', credential: 'github' }, owner)).toBe(true);
    expect(targetMatches({ tenantId: 't', credential: 'jira' }, owner)).toBe(false);
    expect(targetMatches({ tenantId: 't', serverId: 'other' }, owner)).toBe(false);
    expect(targetMatches({ tenantId: 'other', userId: 'u' }, owner)).toBe(false);
    const { credential: _none, ...withoutCredential } = owner;
    expect(targetMatches({ tenantId: 't', credential: 'github' }, withoutCredential)).toBe(false);
  });

  it('tells a call whether a close naming it came since its mark, assuming so once forgotten', () => {
    const log = createCloseLog();
    const mark = log.mark();
    expect(log.closedSince(mark, owner)).toBe(false);
    log.remember({ tenantId: 't', userId: 'someone-else' });
    expect(log.closedSince(mark, owner)).toBe(false);
    log.remember({ tenantId: 't', credential: 'github' });
    expect(log.closedSince(mark, owner)).toBe(true);
    expect(log.closedSince(log.mark(), owner)).toBe(false);
    const old = log.mark();
    log.remember(undefined);
    expect(log.closedSince(old, owner)).toBe(true);
    const forgotten = log.mark();
    for (let index = 0; index < 300; index += 1) log.remember({ tenantId: 'other' });
    expect(log.closedSince(forgotten, owner)).toBe(true);
    expect(log.closedSince(log.mark() - 10, owner)).toBe(false);
  });
});
