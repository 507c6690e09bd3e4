/**
 * Turns the growing decoded text of a generation into final deltas. Text that might still become a stop string is
 * held back, as is a trailing U+FFFD (half of a multi-byte character whose other bytes are the next token's).
 */
export class StopMatcher {
  private released = 0;
  private full = '';
  private stoppedAt: number | undefined;

  constructor(private readonly stops: string[]) {}

  /** The text given so far, cut before the stop string once one appeared. */
  get text(): string {
    return this.stoppedAt === undefined ? this.full : this.full.slice(0, this.stoppedAt);
  }

  push(full: string): { delta: string; stopped: boolean } {
    this.full = full;
    const from = Math.max(0, this.released - Math.max(0, ...this.stops.map((s) => s.length)));
    let cut: number | undefined;
    for (const s of this.stops) {
      const at = s ? full.indexOf(s, from) : -1;
      if (at >= 0 && (cut === undefined || at < cut)) cut = at;
    }
    if (cut !== undefined) {
      this.stoppedAt = cut;
      const delta = full.slice(this.released, Math.max(this.released, cut));
      this.released = Math.max(this.released, cut);
      return { delta, stopped: true };
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, full.length); n > hold; n--) {
        if (full.endsWith(s.slice(0, n))) {
          hold = n;
          break;
        }
      }
    }
    if (full.endsWith('\uFFFD')) hold = Math.max(hold, 1);
    const upto = Math.max(this.released, full.length - hold);
    const delta = full.slice(this.released, upto);
    this.released = upto;
    return { delta, stopped: false };
  }

  /**
   * The last delta once generation ends, given its final full text: what that adds, and what was held back as a
   * possible stop string's start (nothing after a stop string).
   */
  finish(full: string): string {
    const { delta } = this.push(full);
    const end = this.text.length;
    const rest = this.text.slice(this.released, end);
    this.released = end;
    return delta + rest;
  }
}
