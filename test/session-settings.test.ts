import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The scope statement sends only the settings a transaction needs; that is safe only while no
 * code sets a `brigade.*` setting at session level (which would outlive its transaction on a
 * pooled connection). This scans the source for any way to do so.
 */
function sourceFiles(directory: string): string[] {
  return readdirSync(directory).flatMap((entry) => {
    const path = join(directory, entry);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') && !path.endsWith('.test.ts') ? [path] : [];
  });
}

describe('session-level settings', () => {
  it('are never set for brigade.* anywhere in the source', () => {
    const offenders: string[] = [];
    for (const file of sourceFiles(join(import.meta.dirname, '../src'))) {
      const text = readFileSync(file, 'utf8');
      const patterns = [
        /set_config\(\s*'brigade\.[a-z_]+'\s*,[^)]*,\s*false\s*\)/i,
        /\bset\s+(session\s+)?brigade\./i,
        /-c\s+brigade\./i,
        /alter\s+(role|database)[^;]*\bset\s+brigade\./i,
      ];
      for (const pattern of patterns) if (pattern.test(text)) offenders.push(`${file}: ${pattern}`);
      for (const match of text.matchAll(/set_config\(\s*'brigade\.[a-z_]+'\s*,[^)]*\)/gi)) {
        if (!/,\s*true\s*\)$/.test(match[0]) && !match[0].includes('${'))
          offenders.push(`${file}: ${match[0]}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
