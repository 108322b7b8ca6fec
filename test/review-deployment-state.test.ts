import { describe, expect, it } from 'vitest';
import { createDeploymentStates } from '../src/gateway/deployment-state.ts';

/**
 * Review of 3bc8fda ("a full map drops an idle entry, least recently used, never one in use"):
 * the router's capacity map is keyed by what members ask for (`<provider>:<anything>`).
 */
describe('deployment state maps under review', () => {
  it('never drops a capacity with calls in flight when the map is full', () => {
    const states = createDeploymentStates(() => 1_000_000);
    // A platform deployment with calls in flight (say its maxConcurrency is reached)...
    const platform = states.capacityOf('platform:gpt');
    platform.inFlight = 4;
    // ...and 40 other deployments a member keeps busy with slow calls.
    for (let index = 0; index < 40; index += 1) states.capacityOf(`busy:${index}`).inFlight = 1;
    // Then the member asks for 10,000 distinct made-up models.
    for (let index = 0; index < 10_000; index += 1) states.capacityOf(`junk:${index}`);
    // The platform deployment's calls are still in flight: its count must survive.
    expect(states.capacityOf('platform:gpt').inFlight).toBe(4);
  });
});
