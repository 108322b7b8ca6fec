import { describe, expect, it } from 'vitest';
import { createDeploymentStates } from './deployment-state.ts';
import { type ModelRouteDefinition, routeDefaults } from './model-routes.ts';

const route = {
  name: 'chat',
  deployments: [{ model: 'openai:gpt-4o-mini' }],
  ...routeDefaults,
} as ModelRouteDefinition;

describe("the router's deployment states", () => {
  it('keep what is in use when callers fill the maps with model names of their own', () => {
    let time = 1_000_000;
    const states = createDeploymentStates(() => time);
    const platform = states.capacityOf('*:chat:0:openai:gpt-4o-mini');
    platform.inFlight = 3;
    platform.recent.push(time);
    const breaker = states.healthOf('tenant-a:chat:0:openai:gpt-4o-mini', route);
    breaker.inFlight = 1;
    // A member sends a fresh `<provider>:<anything>` per request: 20,000 new keys in each map.
    for (let index = 0; index < 20_000; index += 1) {
      states.capacityOf(`*:oai:x${index}:0:oai:x${index}`);
      states.healthOf(`tenant-b:oai:x${index}:0:oai:x${index}`, route);
    }
    expect(states.capacityOf('*:chat:0:openai:gpt-4o-mini')).toBe(platform);
    expect(states.healthOf('tenant-a:chat:0:openai:gpt-4o-mini', route)).toBe(breaker);
    expect(states.healths.size).toBe(10_000);
    // Idle again (no call in flight, none started in the last minute): it may go.
    platform.inFlight = 0;
    time += 61_000;
    for (let index = 0; index < 20_000; index += 1) states.capacityOf(`*:later:${index}`);
    expect(states.capacityOf('*:chat:0:openai:gpt-4o-mini')).not.toBe(platform);
  });

  it('keep every entry in use, however many of them come before an idle one', () => {
    const states = createDeploymentStates(() => 1_000_000);
    // A platform deployment with calls in flight, then 40 more a member keeps busy with slow
    // calls, then 10,000 model names of the member's own (found by review: only the 32 oldest
    // were looked at for an idle entry, and the oldest went when none was idle).
    const platform = states.capacityOf('platform:gpt');
    platform.inFlight = 4;
    for (let index = 0; index < 40; index += 1) states.capacityOf(`busy:${index}`).inFlight = 1;
    for (let index = 0; index < 10_000; index += 1) states.capacityOf(`junk:${index}`);
    expect(states.capacityOf('platform:gpt')).toBe(platform);
    expect(platform.inFlight).toBe(4);
    expect(states.capacityOf('busy:0').inFlight).toBe(1);
    // And the breakers' map, full of open breakers' neighbours, stays at its size.
    for (let index = 0; index < 10_500; index += 1) states.healthOf(`junk:${index}`, route);
    expect(states.healths.size).toBe(10_000);
  });
});
