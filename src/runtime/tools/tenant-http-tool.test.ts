import { describe, expect, it } from 'vitest';
import { fillTemplate } from './tenant-http-tool.ts';

describe('fillTemplate', () => {
  it('encodes arguments into their place in the template', () => {
    const url = fillTemplate('https://api.example.com/v1/users/{id}/profile?q={q}', {
      id: 'a/b c',
      q: 'x&y',
    });
    expect(url.href).toBe('https://api.example.com/v1/users/a%2Fb%20c/profile?q=x%26y');
  });

  it('refuses arguments that would climb out of the template path', () => {
    for (const id of ['..', '.', '%2e%2e', '.%2E', ' .. '])
      expect(
        () => fillTemplate('https://api.example.com/v1/users/{id}/profile', { id }),
        id,
      ).toThrow(/may not be '\.' or '\.\.'/);
  });
});
