export type {
  ContentPartV1,
  CoreContextV1,
  CoreEventV1,
  CoreLoggerV1,
  CorePluginV1,
  CoreResultV1,
  MessageV1,
  ModelCapabilityV1,
  ModelResultV1,
  ProvenanceV1,
  ToolDescriptionV1,
  ToolOutcomeV1,
  ToolsCapabilityV1,
} from './core-plugin-v1.ts';
export type {
  CreateKeyProviderV1,
  KeyProviderFactoryOptionsV1,
  KeyProviderV1,
  UnwrapKeyRequestV1,
  WrapKeyRequestV1,
  WrappedKeyV1,
} from './key-provider-v1.ts';
