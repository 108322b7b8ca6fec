export { defaultMockReply } from './internal/default-mock-reply.ts';
export { parseMockFaults } from './internal/mock-faults.ts';
export type {
  MockAuthorization,
  MockCallOutcome,
  MockChatMessage,
  MockChatRequest,
  MockFault,
  MockFaultEffects,
  MockFinishReason,
  MockModelCall,
  MockModelServer,
  MockModelServerOptions,
  MockProbabilisticFault,
  MockReply,
  MockScript,
  MockScriptFunction,
  MockToolCall,
  MockUsage,
} from './internal/mock-model-types.ts';
export { createMockModelServer } from './mock-model-server.ts';
