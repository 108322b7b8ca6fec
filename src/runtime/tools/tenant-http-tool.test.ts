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

describe('fillTemplate query pairs', () => {
  const template = 'https://api.example.com/v1/pets?limit={limit}&tag={tag}&q=x{q}';

  it('leaves out a query pair whose argument is absent instead of sending it empty', () => {
    expect(fillTemplate(template, { limit: 5, q: 'y' }).href).toBe(
      'https://api.example.com/v1/pets?limit=5&q=xy',
    );
    expect(fillTemplate('https://api.example.com/v1/pets?limit={limit}', {}).href).toBe(
      'https://api.example.com/v1/pets',
    );
    expect(fillTemplate(template, { limit: null, tag: 'a b' }).href).toBe(
      'https://api.example.com/v1/pets?tag=a%20b&q=x',
    );
  });

  it('repeats a query pair for each element of an array argument', () => {
    expect(fillTemplate(template, { tag: ['a&b', 'c'], q: '' }).href).toBe(
      'https://api.example.com/v1/pets?tag=a%26b&tag=c&q=x',
    );
  });

  it("accepts '.' and '..' as query values (they cannot climb out of the path)", () => {
    expect(fillTemplate(template, { tag: '..', q: '.' }).href).toBe(
      'https://api.example.com/v1/pets?tag=..&q=x.',
    );
  });
});
