import type { Role } from '../identity/permissions.ts';

/** Where a policy applies. All policies binding a caller apply together; the tightest wins. */
export const policyLevels = ['platform', 'tenant', 'role', 'user', 'api_key', 'agent'] as const;

/** A policy level. */
export type PolicyLevel = (typeof policyLevels)[number];

/** Budget periods: calendar periods in the tenant's time zone, or a rolling window. */
export const budgetPeriods = ['day', 'week', 'month', 'rolling'] as const;

/** A budget period. */
export type BudgetPeriod = (typeof budgetPeriods)[number];

/** A money budget. */
export interface BudgetLimit {
  readonly amountUsd: number;
  readonly period: BudgetPeriod;
  /** Length of a rolling window, in hours (rolling budgets only; default 24). */
  readonly windowHours?: number | undefined;
}

/** The limits one policy sets; every field is optional. */
export interface PolicyLimits {
  readonly requestsPerMinute?: number | undefined;
  readonly tokensPerMinute?: number | undefined;
  readonly concurrentRuns?: number | undefined;
  readonly concurrentModelCalls?: number | undefined;
  readonly runsPerDay?: number | undefined;
  readonly toolCallsPerDay?: number | undefined;
  readonly budget?: BudgetLimit | undefined;
}

/** Numeric limit kinds (everything but the budget). */
export const numericLimitKinds = [
  'requestsPerMinute',
  'tokensPerMinute',
  'concurrentRuns',
  'concurrentModelCalls',
  'runsPerDay',
  'toolCallsPerDay',
] as const;

/** A numeric limit kind. */
export type NumericLimitKind = (typeof numericLimitKinds)[number];

/** A stored policy. */
export interface Policy {
  readonly id: string;
  /** Null for platform policies (they apply in every tenant). */
  readonly tenantId: string | null;
  readonly level: PolicyLevel;
  readonly role: Role | null;
  /** The user, API key or agent the policy binds (levels user, api_key, agent). */
  readonly subjectId: string | null;
  readonly name: string | null;
  readonly limits: PolicyLimits;
  /** Who may change it: policies the operator made are the operator's alone. */
  readonly managedBy: 'operator' | 'tenant';
  readonly version: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** What a caller sends to create a policy. */
export interface PolicyInput {
  readonly tenantId?: string | undefined;
  readonly level: PolicyLevel;
  readonly role?: Role | undefined;
  readonly subjectId?: string | undefined;
  readonly name?: string | undefined;
  readonly limits: PolicyLimits;
}

/** What a caller may change on a policy. */
export interface PolicyPatch {
  readonly name?: string | null | undefined;
  readonly limits?: PolicyLimits | undefined;
}

/** One effective numeric limit and the policy it comes from. */
export interface EffectiveLimit {
  readonly limit: number;
  readonly policyId: string;
  readonly level: PolicyLevel;
}

/** The state of one budget or quota for the caller in its current period. */
export interface CounterState {
  readonly policyId: string;
  readonly level: PolicyLevel;
  readonly kind: 'budget' | 'runsPerDay' | 'toolCallsPerDay';
  readonly period: BudgetPeriod;
  readonly agentId: string | null;
  /** Budgets in USD, quotas in units. */
  readonly limit: number;
  readonly used: number;
  readonly reserved: number;
  readonly remaining: number;
  readonly periodStart: Date | null;
  readonly resetsAt: Date | null;
}

/** What binds the caller right now: the tightest numeric limits, every budget and quota. */
export interface MyLimits {
  readonly limits: Partial<Record<NumericLimitKind, EffectiveLimit>>;
  readonly budgets: readonly CounterState[];
  readonly quotas: readonly CounterState[];
}

/** Nano-USD per USD: budgets and costs are counted in integer nano-dollars. */
export const nanosPerUsd = 1_000_000_000;

/** USD (a decimal number) to integer nano-USD. */
export function usdToNanos(usd: number): number {
  return Math.round(usd * nanosPerUsd);
}

/** Integer nano-USD to USD. */
export function nanosToUsd(nanos: number): number {
  return nanos / nanosPerUsd;
}

/**
 * A USD amount for a message: three significant digits (at least two decimals, at most nine:
 * a nano-dollar), so a tiny amount left never reads as `$0.000000`.
 */
export function formatUsd(usd: number): string {
  if (usd <= 0) return '$0';
  const decimals = Math.min(9, Math.max(2, 2 - Math.floor(Math.log10(usd))));
  return `$${usd.toFixed(decimals)}`;
}
