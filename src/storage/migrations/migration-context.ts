/** Values a migration's SQL depends on. */
export interface MigrationContext {
  /** Name of the runtime role that receives grants (validated as a plain SQL identifier). */
  readonly runtimeRole: string;
}
