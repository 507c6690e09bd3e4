import type { CausalLM } from '../slm/causalLM.js';
import { SequenceCursor } from '../slm/cursor.js';
import { type PrefixCache, prefixCacheOf } from '../slm/prefixCache.js';

/**
 * A local model following the generation: a fixed prompt plus the tokens generated so far, with the next-token
 * log-probabilities after every generated prefix kept. Asking for a prefix that differs from what was fed (a draft
 * that was rejected) rewinds to the common part and feeds only the rest.
 */
export class Track {
  private readonly cursor: SequenceCursor;
  private fed: number[] = [];
  /** rows[j]: next-token log-probabilities after the prompt and fed[0..j). */
  private rows: Float32Array[] = [];
  /** Forward passes run (a block of tokens fed at once counts once). */
  passes = 0;
  /** The model's prefix cache, shared with its engine: a prompt a chat's earlier turn began is fed only past it. */
  private readonly prefixes: PrefixCache | undefined;

  constructor(
    lm: CausalLM,
    private readonly prompt: number[],
  ) {
    this.cursor = new SequenceCursor(lm);
    this.prefixes = lm.hasCache ? prefixCacheOf(lm) : undefined;
  }

  /** Offers what was fed (the prompt and the answer so far) to the prefix cache, for the conversation's next turn. */
  keep(): void {
    const s = this.cursor.snapshot();
    if (s && this.prefixes) this.prefixes.put(s.tokens, s.kv);
  }

  /** The rows after each prefix of `generated`, from the empty one to the whole: generated.length + 1 rows. */
  async rowsFor(generated: readonly number[]): Promise<Float32Array[]> {
    if (this.rows.length === 0) {
      const hit = this.prefixes?.match(this.prompt);
      if (hit) this.cursor.resume(this.prompt.slice(0, hit.length), hit.kv);
      this.rows = await this.cursor.extend(this.prompt.slice(hit?.length ?? 0), 'last');
      this.passes++;
    }
    let common = 0;
    while (common < this.fed.length && common < generated.length && this.fed[common] === generated[common]) common++;
    // A shorter prefix of what was fed is answered from the rows kept; a different token rewinds.
    if (common === generated.length) return this.rows.slice(0, generated.length + 1);
    if (common < this.fed.length) {
      this.cursor.rewind(this.prompt.length + common);
      this.fed.length = common;
      this.rows.length = common + 1;
    }
    const rest = generated.slice(common);
    this.rows.push(...(await this.cursor.extend(rest, 'all')));
    this.passes++;
    this.fed.push(...rest);
    return this.rows.slice(0, generated.length + 1);
  }

  async next(generated: readonly number[]): Promise<Float32Array> {
    const rows = await this.rowsFor(generated);
    return rows[rows.length - 1] as Float32Array;
  }
}
