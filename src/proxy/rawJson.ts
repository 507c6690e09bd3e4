/**
 * The text a JSON value arrived as from an upstream, for values relayed unchanged: writing it back saves
 * re-serialising every response and every streamed event. A plugin that rewrites a value makes a new object, which
 * has no entry here and is serialised afresh.
 */
export const rawJson = new WeakMap<object, string>();

/** JSON text of `body`, plus extra top-level fields, reusing the arrival text when there is one. */
export function toJson(body: object, extra?: Record<string, unknown>): string {
  const raw = rawJson.get(body);
  if (!extra) return raw ?? JSON.stringify(body);
  const end = raw?.lastIndexOf('}') ?? -1;
  // Splice the extra fields in before the closing brace of a non-empty object.
  if (raw && end > 0 && /[^\s{]/.test(raw.slice(1, end))) {
    let out = raw.slice(0, end);
    for (const [k, v] of Object.entries(extra)) out += `,${JSON.stringify(k)}:${JSON.stringify(v)}`;
    return `${out}}`;
  }
  return JSON.stringify({ ...body, ...extra });
}
