import { LRUCache } from 'lru-cache';
import { type KvCache, truncate } from './kv.js';

/** A prompt token's log-probability and its k most likely alternatives, most likely first. */
export interface TokenScore {
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** Scores of a cached sequence's own tokens: rows[j] scores ids[j + 1], with `k` alternatives each. */
export interface CachedScores {
  k: number;
  rows: TokenScore[];
}

/** A cached prefix: its tokens and their keys and values (batch 1, no padding), and their scores when known. */
interface Entry {
  ids: number[];
  kv: KvCache;
  scores?: CachedScores;
}

/** Shorter prefixes are not worth the copy they cost to keep. */
const MIN_TOKENS = 16;

const kvBytes = (kv: KvCache) => [...kv.keys, ...kv.values].reduce((a, t) => a + t.byteLength, 0);
/** Roughly what a score row's objects take on the heap (a number and k id/logprob pairs). */
const entryBytes = (e: Entry) => kvBytes(e.kv) + (e.scores ? e.scores.rows.length * (e.scores.k + 1) * 48 : 0);

/**
 * Keys and values of recent sequences, so a prompt that starts with one (the next turn of a chat re-sends the whole
 * conversation) is prefilled from where the cached part ends instead of from its first token: vLLM's automatic prefix
 * caching and llama.cpp's cache_prompt, in the smallest form. Bounded in bytes, least recently used out first.
 */
export class PrefixCache {
  private readonly entries: LRUCache<string, Entry>;

  constructor(maxBytes: number) {
    this.entries = new LRUCache<string, Entry>({
      maxSize: maxBytes,
      sizeCalculation: (e) => Math.max(1, entryBytes(e)),
    });
  }

  /**
   * Keeps a sequence's cache; `kv` holds exactly `ids` (batch 1, length ids.length). `scores`, when the sequence's
   * prompt was scored (echo with logprobs), lets later scoring requests that share the prefix start from it too.
   */
  put(ids: readonly number[], kv: KvCache, scores?: CachedScores): void {
    if (ids.length < MIN_TOKENS || kv.batch !== 1 || kv.length !== ids.length) return;
    // An entry this one extends is now redundant: the longer one serves every prompt the shorter one would.
    for (const [key, e] of this.entries.entries())
      if (commonPrefix(e.ids, ids) === e.ids.length) this.entries.delete(key);
    this.entries.set(ids.join(','), { ids: [...ids], kv, ...(scores ? { scores } : {}) });
  }

  /**
   * The cached keys and values of the longest prefix `prompt` shares with a cached sequence, leaving at least one
   * prompt token to prefill (its logits choose the first new token), or undefined when none is long enough.
   * With `scoresK` the request scores its prompt (k alternatives per token): only an entry holding scores with at
   * least k alternatives serves it, for as far as those scores reach, and the hit brings the scores of prompt tokens
   * 1..length (the last is predicted by the last cached position, so it must match the prompt too).
   */
  match(
    prompt: readonly number[],
    scoresK?: number,
  ): { length: number; kv: KvCache; scores?: TokenScore[] } | undefined {
    let best: Entry | undefined;
    let bestLength = 0;
    for (const e of this.entries.values()) {
      const common = commonPrefix(e.ids, prompt);
      let n = Math.min(common, prompt.length - 1);
      if (scoresK !== undefined) {
        if (!e.scores || e.scores.k < scoresK) continue;
        n = Math.min(n, common - 1, e.scores.rows.length);
      }
      if (n > bestLength) {
        best = e;
        bestLength = n;
      }
    }
    if (!best || bestLength < MIN_TOKENS) return undefined;
    // A hit counts as a use for the LRU order.
    this.entries.get(best.ids.join(','));
    const kv = truncate(best.kv, bestLength);
    if (scoresK === undefined || !best.scores) return { length: bestLength, kv };
    const scores = best.scores.rows
      .slice(0, bestLength)
      .map((r) => ({ logprob: r.logprob, top: r.top.slice(0, scoresK) }));
    return { length: bestLength, kv, scores };
  }
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** The prefix cache of each loaded model, shared by its GenerationEngine and EFT's tracks over it. */
const byModel = new WeakMap<object, PrefixCache>();

/** Gives a loaded model its prefix cache (the model registry does, from the model's prefixCacheMB). */
export function attachPrefixCache(model: object, cache: PrefixCache): void {
  byModel.set(model, cache);
}

/** The prefix cache attached to a loaded model, if any. */
export function prefixCacheOf(model: object): PrefixCache | undefined {
  return byModel.get(model);
}
