/** What a unique violation (SQLSTATE 23505) was about, for the client who caused it. */
export interface UniqueViolation {
  /** The field whose value is taken (`slug`, `email`, `name`…), when known. */
  readonly field: string | undefined;
  /** One sentence naming it, e.g. "A tenant with this slug exists already." */
  readonly message: string;
}

/**
 * The constraints a client can run into, by name. PostgreSQL leaves the key's value out of
 * the error of a table under row-level security, so the constraint's name is what tells.
 */
const known: Readonly<Record<string, { field: string; message: string }>> = {
  tenants_slug_key: { field: 'slug', message: 'A tenant with this slug exists already.' },
  users_email_key: { field: 'email', message: 'The tenant has a user with this e-mail already.' },
  users_external_key: {
    field: 'subject',
    message: 'The tenant has a user with this identity provider subject already.',
  },
  credentials_user_name: { field: 'name', message: 'You have a credential of this name already.' },
  credentials_shared_name: {
    field: 'name',
    message: 'The tenant has a shared credential of this name already.',
  },
  consents_active: { field: 'purpose', message: 'This consent is recorded already.' },
  policies_target: {
    field: 'level',
    message:
      'You have a policy on this target already (the operator and the tenant may have one each): change that one.',
  },
};

/** Describes a unique violation by its constraint (and table), without any stored value. */
export function describeUniqueViolation(error: unknown): UniqueViolation {
  const { constraint, table } = error as { constraint?: unknown; table?: unknown };
  const named = typeof constraint === 'string' ? known[constraint] : undefined;
  if (named !== undefined) return named;
  if (typeof constraint === 'string' && constraint.endsWith('_tenant_id_name_key')) {
    const what = typeof table === 'string' ? table.replace(/_/g, ' ').replace(/s$/, '') : 'object';
    return { field: 'name', message: `The tenant has a ${what} of this name already.` };
  }
  return { field: undefined, message: 'An object with the same unique value already exists.' };
}
