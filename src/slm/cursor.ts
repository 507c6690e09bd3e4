import type { CausalLM } from './causalLM.js';
import { type KvCache, truncate } from './kv.js';
import { logSoftmax } from './sampling.js';

/** Logits rows at most this many at once: a long prompt is fed in chunks through the cache. */
const LOGITS_BUDGET = 4 * 1024 * 1024;

/**
 * One sequence walked forward (and back) through a causal LM with its KV cache: the building block of decoders that
 * combine several models token by token (EFT) or score drafted blocks and keep only an accepted prefix (speculative
 * decoding). Not shared between requests.
 */
export class SequenceCursor {
  private past: KvCache | null;
  private tokens: number[] = [];

  constructor(readonly lm: CausalLM) {
    this.past = lm.hasCache ? lm.emptyCache(1) : null;
  }

  get length(): number {
    return this.tokens.length;
  }

  /** Starts an empty cursor from keys and values already computed for `tokens` (a prefix cache hit). */
  resume(tokens: readonly number[], kv: KvCache): void {
    if (this.tokens.length > 0 || !this.past) throw new Error('resume needs an empty cursor over a model with a cache');
    this.tokens = [...tokens];
    this.past = kv;
  }

  /** The tokens fed so far and their keys and values (none for a model without a cache). */
  snapshot(): { tokens: number[]; kv: KvCache } | undefined {
    return this.past ? { tokens: [...this.tokens], kv: this.past } : undefined;
  }

  /**
   * Appends tokens and returns the next-token log-probabilities after each of them (`all`) or after the last one only.
   * Row i is the distribution of the token that follows `tokens[i]`.
   */
  async extend(tokens: number[], rows: 'all' | 'last' = 'last'): Promise<Float32Array[]> {
    if (tokens.length === 0) throw new Error('extend needs at least one token');
    this.lm.checkFits(this.tokens.length + tokens.length, 0);
    const vocab = this.lm.folder.config.vocab_size ?? this.lm.tokenizer.vocabSize;
    if (!this.lm.hasCache) return this.extendWithoutCache(tokens, rows, vocab);
    const chunk = Math.max(1, Math.floor(LOGITS_BUDGET / vocab));
    const out: Float32Array[] = [];
    for (let start = 0; start < tokens.length; start += chunk) {
      const slice = tokens.slice(start, start + chunk);
      const before = this.tokens.length;
      const res = await this.lm.forward({
        ids: [slice],
        mask: [new Array<number>(before + slice.length).fill(1)],
        positions: [slice.map((_, j) => before + j)],
        past: this.past,
      });
      this.past = res.present;
      this.tokens.push(...slice);
      const last = start + slice.length === tokens.length;
      for (let j = 0; j < slice.length; j++) {
        if (rows === 'all' || (last && j === slice.length - 1)) out.push(logSoftmax(res.logits, j * vocab, vocab));
      }
    }
    return out;
  }

  private async extendWithoutCache(tokens: number[], rows: 'all' | 'last', vocab: number): Promise<Float32Array[]> {
    const ids = [...this.tokens, ...tokens];
    const res = await this.lm.forward({
      ids: [ids],
      mask: [ids.map(() => 1)],
      positions: [ids.map((_, i) => i)],
      past: null,
    });
    this.tokens = ids;
    const first = rows === 'all' ? ids.length - tokens.length : ids.length - 1;
    const out: Float32Array[] = [];
    for (let i = first; i < ids.length; i++) out.push(logSoftmax(res.logits, i * vocab, vocab));
    return out;
  }

  /** Forgets everything after the first `length` tokens (drafted tokens that were not accepted). */
  rewind(length: number): void {
    if (length >= this.tokens.length) return;
    this.tokens.length = length;
    if (this.past) this.past = truncate(this.past, length);
  }
}
