/**
 * Where a streamed answer is checked: a window every `every` tokens (a streamed chunk is about one token), reaching
 * `overlap` tokens back into text already checked, so that unsafe text split across two windows is still seen whole.
 */
export class StreamWindows {
  /** Text offsets where each token (chunk) ended. */
  private readonly ends: number[] = [0];
  private checkedTokens = 0;

  constructor(
    private readonly every: number,
    private readonly overlap: number,
  ) {}

  /** Tokens seen but not yet in any window. */
  get unchecked(): number {
    return this.ends.length - 1 - this.checkedTokens;
  }

  /** Records a chunk's text; returns the text of a window when one is due (always at the end, `final`). */
  push(text: string, final = false): string | undefined {
    const last = this.ends[this.ends.length - 1] as number;
    if (text.length > last) this.ends.push(text.length);
    const tokens = this.ends.length - 1;
    if (tokens === this.checkedTokens || (!final && tokens - this.checkedTokens < this.every)) return undefined;
    const from = this.ends[Math.max(0, this.checkedTokens - this.overlap)] as number;
    this.checkedTokens = tokens;
    return text.slice(from);
  }
}
