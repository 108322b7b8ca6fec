import { ConfigError } from '../config/index.ts';
import { AppError, ValidationError } from '../domain/errors.ts';
import { describeUniqueViolation } from '../storage/postgres/unique-violation.ts';

/** Where the CLI writes; tests pass buffers. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
}

/** Thrown for a wrong command line; exits with status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Prints rows as an aligned table (human output). */
export function printTable(
  io: CliIo,
  rows: readonly Record<string, unknown>[],
  columns: readonly string[],
): void {
  const cells = rows.map((row) => columns.map((column) => formatCell(row[column])));
  const widths = columns.map((column, index) =>
    Math.max(column.length, ...cells.map((line) => line[index]?.length ?? 0)),
  );
  const render = (line: readonly string[]) =>
    line
      .map((cell, index) => cell.padEnd(widths[index] ?? 0))
      .join('  ')
      .trimEnd();
  io.out(render(columns.map((column) => column.toUpperCase())));
  for (const line of cells) io.out(render(line));
}

function formatCell(value: unknown): string {
  if (value === null || value === undefined) return '-';
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.join(',');
  return String(value);
}

/** The one-line reason and exit status for an error (never a stack trace). */
export function describeFailure(error: unknown): { message: string; status: number } {
  if (error instanceof UsageError) return { message: error.message, status: 2 };
  if (error instanceof ConfigError) return { message: error.message, status: 78 };
  if (error instanceof ValidationError) {
    return {
      message: `invalid input: ${error.issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ')}`,
      status: 1,
    };
  }
  if (error instanceof AppError) return { message: `${error.code}: ${error.message}`, status: 1 };
  const code = (error as { code?: unknown }).code;
  if (code === '23505')
    return { message: `conflict: ${describeUniqueViolation(error).message}`, status: 1 };
  if (code === 'ECONNREFUSED')
    return { message: 'cannot reach the database (connection refused)', status: 1 };
  const message = error instanceof Error ? error.message : String(error);
  return { message: message.split('\n')[0] ?? 'failed', status: 1 };
}
