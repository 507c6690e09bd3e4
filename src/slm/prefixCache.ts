import { LRUCache } from 'lru-cache';
import { type KvCache, truncate } from './kv.js';

/** A cached prefix: its tokens and their keys and values (batch 1, no padding). */
interface Entry {
  ids: number[];
  kv: KvCache;
}

/** Shorter prefixes are not worth the copy they cost to keep. */
const MIN_TOKENS = 16;

const bytes = (kv: KvCache) => [...kv.keys, ...kv.values].reduce((a, t) => a + t.byteLength, 0);

/**
 * Keys and values of recent sequences, so a prompt that starts with one (the next turn of a chat re-sends the whole
 * conversation) is prefilled from where the cached part ends instead of from its first token: vLLM's automatic prefix
 * caching and llama.cpp's cache_prompt, in the smallest form. Bounded in bytes, least recently used out first.
 */
export class PrefixCache {
  private readonly entries: LRUCache<string, Entry>;

  constructor(maxBytes: number) {
    this.entries = new LRUCache<string, Entry>({ maxSize: maxBytes, sizeCalculation: (e) => Math.max(1, bytes(e.kv)) });
  }

  /** Keeps a sequence's cache; `kv` holds exactly `ids` (batch 1, length ids.length). */
  put(ids: readonly number[], kv: KvCache): void {
    if (ids.length < MIN_TOKENS || kv.batch !== 1 || kv.length !== ids.length) return;
    // An entry this one extends is now redundant: the longer one serves every prompt the shorter one would.
    for (const [key, e] of this.entries.entries())
      if (commonPrefix(e.ids, ids) === e.ids.length) this.entries.delete(key);
    this.entries.set(ids.join(','), { ids: [...ids], kv });
  }

  /**
   * The cached keys and values of the longest prefix `prompt` shares with a cached sequence, leaving at least one
   * prompt token to prefill (its logits choose the first new token), or undefined when none is long enough.
   */
  match(prompt: readonly number[]): { length: number; kv: KvCache } | undefined {
    let best: Entry | undefined;
    let bestLength = 0;
    for (const e of this.entries.values()) {
      const n = Math.min(commonPrefix(e.ids, prompt), prompt.length - 1);
      if (n > bestLength) {
        best = e;
        bestLength = n;
      }
    }
    if (!best || bestLength < MIN_TOKENS) return undefined;
    // A hit counts as a use for the LRU order.
    this.entries.get(best.ids.join(','));
    return { length: bestLength, kv: truncate(best.kv, bestLength) };
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
