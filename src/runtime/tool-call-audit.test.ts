import { describe, expect, it } from 'vitest';
import { toolPolicyVersion } from './tool-call-audit.ts';
import type { ToolDefinition } from './tools/tool-registry.ts';

const tool: ToolDefinition = {
  name: 'send_mail',
  description: 'Sends a mail.',
  inputSchema: { type: 'object', properties: { to: { type: 'string' } } },
  risk: 'sensitive',
  kind: 'http',
  definitionDigest: 'a'.repeat(64),
  execute: async () => ({}),
};
const agent = { approvalRequiredTools: [] };

describe('toolPolicyVersion', () => {
  it('is a SHA-256 that ignores key order and the description', () => {
    const version = toolPolicyVersion(tool, agent);
    expect(version).toMatch(/^sha256:[0-9a-f]{64}$/);
    const reordered: ToolDefinition = {
      ...tool,
      description: 'Another description.',
      inputSchema: { properties: { to: { type: 'string' } }, type: 'object' },
    };
    expect(toolPolicyVersion(reordered, agent)).toBe(version);
  });

  it('changes with the tool definition, its rules, its roles and the agent approval list', () => {
    const version = toolPolicyVersion(tool, agent);
    for (const changed of [
      toolPolicyVersion({ ...tool, definitionDigest: 'b'.repeat(64) }, agent),
      toolPolicyVersion({ ...tool, risk: 'write' }, agent),
      toolPolicyVersion({ ...tool, allowedRoles: ['owner'] }, agent),
      toolPolicyVersion({ ...tool, provenanceRules: [{ argument: 'subject' }] }, agent),
      toolPolicyVersion({ ...tool, timeoutMs: 1_000 }, agent),
      toolPolicyVersion(tool, { approvalRequiredTools: ['send_mail'] }),
    ])
      expect(changed).not.toBe(version);
  });
});
