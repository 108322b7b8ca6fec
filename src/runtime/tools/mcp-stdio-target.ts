/*
 * Whose a pooled stdio MCP server process is, and which of them a close request names.
 */

/**
 * Which pooled stdio MCP processes to close: those of a tenant, narrowed by every field given
 * (ids are compared in lower case, as PostgreSQL reads UUIDs).
 */
export interface McpStdioTarget {
  readonly tenantId: string;
  /** One user's processes; absent: every user's. */
  readonly userId?: string | undefined;
  /** Processes started with the vault credential of this name; absent: whatever they got. */
  readonly credential?: string | undefined;
  /** One registration's processes; absent: every registration's. */
  readonly serverId?: string | undefined;
}

/** Whose a pooled process is, as a target names it. */
export interface McpStdioProcessOwner {
  readonly tenantId: string;
  readonly userId: string;
  readonly serverId: string;
  /** The vault credential it was started with; undefined: none. */
  readonly credential?: string | undefined;
}

/**
 * Who a pooled process belongs to, never shared between users: the tenant's registration
 * (`serverId`) of a declared server (`command`), and the name of the vault credential
 * (`credential`) its secret comes from.
 */
export interface McpStdioOwner extends McpStdioProcessOwner {
  readonly command: string;
  /**
   * Reads the calling user's credential for `credentialEnv` (the vault); absent or undefined:
   * none is passed. Read by the pool, so a close that comes while it is read is not missed.
   */
  readonly readSecret?: (() => Promise<string | undefined>) | undefined;
}

/** Whether `target` names the process of `owner`. */
export function targetMatches(target: McpStdioTarget, owner: McpStdioProcessOwner): boolean {
  const same = (wanted: string | undefined, actual: string) =>
    wanted === undefined || wanted.toLowerCase() === actual.toLowerCase();
  return (
    same(target.tenantId, owner.tenantId) &&
    same(target.userId, owner.userId) &&
    same(target.serverId, owner.serverId) &&
    (target.credential === undefined || target.credential === owner.credential)
  );
}

/** Close requests remembered for calls reading their secret meanwhile. */
const maxRemembered = 256;

/**
 * The latest close requests, numbered: a call marks the log before it reads its secret and
 * asks afterwards whether a close naming it came meanwhile. A mark older than what the log
 * remembers counts as closed (the call reads its secret again, which is only slower).
 */
export function createCloseLog() {
  /** Undefined target: every process. */
  const entries: { readonly seq: number; readonly target: McpStdioTarget | undefined }[] = [];
  let seq = 0;
  return {
    remember(target: McpStdioTarget | undefined): void {
      seq += 1;
      entries.push({ seq, target });
      if (entries.length > maxRemembered) entries.shift();
    },
    /** The number of the latest close. */
    mark(): number {
      return seq;
    },
    /** Whether a close naming `owner` came after the one numbered `mark`. */
    closedSince(mark: number, owner: McpStdioProcessOwner): boolean {
      if (mark === seq) return false;
      if (mark + 1 < (entries[0]?.seq ?? 0)) return true;
      return entries.some(
        (entry) =>
          entry.seq > mark && (entry.target === undefined || targetMatches(entry.target, owner)),
      );
    },
  };
}
