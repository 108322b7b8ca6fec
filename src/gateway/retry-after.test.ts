import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { providerHttpError } from './ai-sdk-model.ts';

const waitOf = (headers: Record<string, string>, status = 503) =>
  providerHttpError({ status, body: '', headers }).details?.['retryAfterSeconds'];

describe("a provider's Retry-After", () => {
  it('is read from either header, the milliseconds one first', () => {
    expect(waitOf({ 'retry-after': '30' })).toBe(30);
    expect(waitOf({ 'retry-after-ms': '1500', 'retry-after': '30' })).toBe(1.5);
    expect(waitOf({ 'retry-after': new Date(Date.now() + 20_000).toUTCString() })).toBeGreaterThan(
      15,
    );
  });

  it('is capped at an hour in every form: it cools a deployment every tenant shares', () => {
    expect(waitOf({ 'retry-after-ms': '99999999999' })).toBe(3600);
    expect(waitOf({ 'retry-after': '99999999999' }, 429)).toBe(3600);
    expect(waitOf({ 'retry-after': 'Fri, 31 Dec 9999 23:59:59 GMT' })).toBe(3600);
    fc.assert(
      fc.property(fc.nat(), (ms) => {
        const seconds = waitOf({ 'retry-after-ms': String(ms) });
        expect(seconds).toBeGreaterThanOrEqual(0);
        expect(seconds).toBeLessThanOrEqual(3600);
      }),
    );
  });

  it('treats a blank or unreadable header as absent', () => {
    expect(waitOf({ 'retry-after-ms': '', 'retry-after': '30' })).toBe(30);
    expect(waitOf({ 'retry-after-ms': '  ', 'retry-after': '30' })).toBe(30);
    expect(waitOf({ 'retry-after': '' })).toBeUndefined();
    expect(waitOf({ 'retry-after': 'soon' })).toBeUndefined();
    expect(waitOf({ 'retry-after': '-5' })).toBeUndefined();
  });
});
