import { PLACEHOLDER_FORMAT } from './schema.js';

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * One request's redaction map: placeholder <-> original value. It lives in the request's `ctx.state` only; nothing
 * here is ever logged or reported (reports carry counts).
 */
export class Vault {
  private readonly byValue = new Map<string, string>();
  readonly originals = new Map<string, string>();
  /** Highest number given per label. */
  private readonly counters = new Map<string, number>();
  private readonly open: string;
  private readonly mid: string;
  private readonly close: string;
  /** Anything shaped like a placeholder; restoring looks each match up, so the cost does not grow with the map. */
  private readonly shape: RegExp;
  /** Placeholder-shaped strings the client itself wrote: never assigned, so never "restored" into a value. */
  private readonly reserved = new Set<string>();
  private longest = 0;

  constructor(format: string, texts: Iterable<string>) {
    const m = PLACEHOLDER_FORMAT.exec(format);
    if (!m) throw new Error('invalid placeholder format');
    [, this.open, this.mid, this.close] = m as unknown as [string, string, string, string];
    const [o, mid, c] = [this.open, this.mid, this.close].map(escapeRegExp);
    this.shape = new RegExp(`${o}[A-Z][A-Z_]*${mid}\\d+${c}`, 'g');
    for (const t of texts) if (t.includes(this.open)) for (const r of t.matchAll(this.shape)) this.reserved.add(r[0]);
  }

  get size(): number {
    return this.originals.size;
  }

  /** The placeholder for `value` of type `label`: the same one each time the same value comes again. */
  placeholder(label: string, value: string): string {
    const key = `${label}\u0000${value}`;
    const known = this.byValue.get(key);
    if (known) return known;
    let n = this.counters.get(label) ?? 0;
    let p: string;
    do p = `${this.open}${label}${this.mid}${++n}${this.close}`;
    while (this.reserved.has(p));
    this.counters.set(label, n);
    this.byValue.set(key, p);
    this.originals.set(p, value);
    this.longest = Math.max(this.longest, p.length);
    return p;
  }

  /**
   * Puts the original values back. `json`: the text is inside a JSON string (tool-call arguments), so values are
   * escaped as JSON string content. Placeholders never assigned (a model inventing `[EMAIL_9]`) stay as they are.
   */
  restore(text: string, json = false): { text: string; count: number } {
    if (this.originals.size === 0 || !text.includes(this.open)) return { text, count: 0 };
    let count = 0;
    const out = text.replace(this.shape, (p) => {
      const v = this.originals.get(p);
      if (v === undefined) return p;
      count++;
      return json ? JSON.stringify(v).slice(1, -1) : v;
    });
    return { text: out, count };
  }

  /**
   * Characters at the end of `s` (from `from` on) that may be the start of an assigned placeholder still arriving:
   * a stream holds these back and emits the rest.
   */
  pendingTail(s: string, from = 0): number {
    if (this.originals.size === 0) return 0;
    const first = this.open[0] as string;
    for (let i = Math.max(from, s.length - this.longest + 1); i < s.length; i++)
      if (s[i] === first && this.mayStart(s.slice(i))) return s.length - i;
    return 0;
  }

  /** Whether `tail` may grow into an assigned placeholder; checked per label, not per placeholder. */
  private mayStart(tail: string): boolean {
    if (tail.length <= this.open.length) return this.open.startsWith(tail);
    if (!tail.startsWith(this.open)) return false;
    const r = tail.slice(this.open.length);
    for (const [label, max] of this.counters) {
      const head = label + this.mid;
      if (head.length >= r.length) {
        if (head.startsWith(r)) return true;
        continue;
      }
      if (!r.startsWith(head)) continue;
      const m = /^(\d+)([\s\S]*)$/.exec(r.slice(head.length));
      if (!m) continue;
      const [, digits, rest] = m as unknown as [string, string, string];
      // More digits may follow: hold while the number so far does not exceed the highest one given.
      if (rest === '' && digits[0] !== '0' && Number(digits) <= max) return true;
      if (rest && rest.length < this.close.length && this.close.startsWith(rest)) {
        if (this.originals.has(this.open + head + digits + this.close)) return true;
      }
    }
    return false;
  }

  /** Where the last complete assigned placeholder in `s` ends (0 if none). */
  lastPlaceholderEnd(s: string): number {
    if (!s.includes(this.open)) return 0;
    let end = 0;
    for (const m of s.matchAll(this.shape)) if (this.originals.has(m[0])) end = m.index + m[0].length;
    return end;
  }
}

/**
 * Restores one streamed text (a choice's content, or one tool call's arguments) across chunk boundaries: emits
 * everything that cannot be part of a placeholder still arriving, holds back the rest until it can tell.
 */
export class StreamRestorer {
  private held = '';
  restored = 0;

  constructor(
    private readonly vault: Vault,
    private readonly json = false,
  ) {}

  get holding(): boolean {
    return this.held.length > 0;
  }

  push(delta: string): string {
    const s = this.held + delta;
    const keep = this.vault.pendingTail(s, this.vault.lastPlaceholderEnd(s));
    this.held = s.slice(s.length - keep);
    return this.emit(s.slice(0, s.length - keep));
  }

  flush(): string {
    const s = this.held;
    this.held = '';
    return this.emit(s);
  }

  private emit(s: string): string {
    if (!s) return '';
    const r = this.vault.restore(s, this.json);
    this.restored += r.count;
    return r.text;
  }
}
