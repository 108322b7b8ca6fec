/**
 * A page cursor of the lists in creation order (a thread's runs, pending approvals): the last
 * item's creation time in microseconds since the Unix epoch and its id, as
 * `<microseconds>_<uuid>`. Both are needed: items of one transaction share a creation time,
 * and the id orders them. The cursor carries its position rather than naming a row, so a page
 * after an item that was deleted or decided since goes on where it was; it reveals nothing
 * beyond the caller's own item it came from.
 */
export interface CreationCursor {
  /** Creation time, microseconds since 1970-01-01T00:00:00Z, as decimal digits (no float). */
  readonly micros: string;
  readonly id: string;
}

/**
 * The format of a creation cursor: at most 16 digits (which keeps the time before the year
 * 2286, a timestamp PostgreSQL takes), `_`, a UUID. No `i` flag: the OpenAPI document
 * publishes the pattern's source, where a flag cannot go.
 */
export const creationCursorPattern =
  /^\d{1,16}_[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** The cursor text of `cursor`. */
export function encodeCreationCursor(cursor: CreationCursor): string {
  return `${cursor.micros}_${cursor.id}`;
}

/** The cursor in `text`, or undefined when it is not one. */
export function decodeCreationCursor(text: string): CreationCursor | undefined {
  if (!creationCursorPattern.test(text)) return undefined;
  const [micros = '', id = ''] = text.split('_');
  return { micros, id: id.toLowerCase() };
}
