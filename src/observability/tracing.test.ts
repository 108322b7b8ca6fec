import { describe, expect, it } from 'vitest';
import { createTracing, type StoredSpan } from './tracing.ts';

describe('the span store processor', () => {
  it('drops spans past its queue while the store is slow, and says so, instead of growing', async () => {
    let release: () => void = () => undefined;
    const stalled = new Promise<void>((resolve) => {
      release = resolve;
    });
    const written: StoredSpan[] = [];
    const errors: string[] = [];
    const tracing = createTracing({
      sampleRatio: 1,
      userAttribute: 'pseudonym',
      version: 'test',
      // The database is stuck: no batch finishes until it is released.
      store: async (spans) => {
        await stalled;
        written.push(...spans);
      },
      onStoreError: (error) => errors.push((error as Error).message),
    });
    const attributes = tracing.subjectAttributes({ tenantId: 't1', userId: 'u1' });
    for (let index = 0; index < 15_000; index += 1)
      tracing.tracer.startSpan('work', { attributes }).end();
    release();
    await tracing.shutdown();
    expect(written).toHaveLength(10_000);
    expect(errors).toEqual(['the span store fell behind: 5000 spans were dropped']);
  });
});
