import { LRUCache } from 'lru-cache';
import type { Classifier } from '../../slm/classifier.js';
import type { JsonObject } from '../types.js';
import { type GuardCheck, round4 } from './check.js';
import type { GuardConfig } from './schema.js';

/** Characters of text the score cache may hold (about 32 MB of UTF-16). */
const CACHE_CHARS = 16_000_000;

/** The threshold of every label: config per label, else config's single threshold, else the model's own. */
export function labelThresholds(c: Classifier, cfg: NonNullable<GuardConfig['classifier']>): Map<string, number> {
  const own = c.folder.config as { tandem_threshold?: unknown; tandem_category_thresholds?: unknown };
  const base = cfg.threshold ?? (typeof own.tandem_threshold === 'number' ? own.tandem_threshold : 0.5);
  let per: Record<string, unknown> = {};
  if (cfg.categoryThresholds === 'model') {
    const t = own.tandem_category_thresholds;
    if (!t || typeof t !== 'object')
      throw new Error(`guard: classifier '${cfg.model}' has no tandem_category_thresholds in its config.json`);
    per = t as Record<string, unknown>;
  } else if (cfg.categoryThresholds) per = cfg.categoryThresholds;
  const wanted = cfg.labels ?? c.labels;
  const absent = [...new Set([...Object.keys(per), ...wanted])].filter((l) => !c.labels.includes(l));
  if (absent.length)
    throw new Error(
      `guard: classifier '${cfg.model}' has no label ${absent.join(', ')} (labels: ${c.labels.join(', ')})`,
    );
  return new Map(wanted.map((l) => [l, typeof per[l] === 'number' ? (per[l] as number) : base]));
}

/**
 * The safety classifier on every text, read whole: each text is cut into overlapping windows of the model's length
 * (a classifier that silently truncated would let anything past its limit through). Windows are taken from the
 * newest text backwards, so when a request has more than `maxPieces` the message being answered is the one checked.
 * A text read whole before (a chat resends its history every turn) is answered from a cache of its scores.
 */
export function classifierCheck(c: Classifier, g: GuardConfig): GuardCheck {
  const cfg = g.classifier as NonNullable<GuardConfig['classifier']>;
  const thresholds = labelThresholds(c, cfg);
  // Bounded in entries and in characters held (long texts would otherwise pin megabytes each).
  const cache =
    g.cacheSize > 0
      ? new LRUCache<string, Known>({
          max: g.cacheSize,
          maxSize: CACHE_CHARS,
          // A text over a million characters is not kept: it would push out everything else.
          maxEntrySize: 1_000_000,
          sizeCalculation: (_v, text) => text.length + 64,
        })
      : undefined;
  return async (texts) => {
    const windows: number[][] = [];
    /** Texts to classify now: where their windows are in `windows`. */
    const fresh: { text: string; from: number; to: number; whole: boolean }[] = [];
    const known: Known[] = [];
    let used = 0;
    let unchecked = 0;
    for (let i = texts.length - 1; i >= 0; i--) {
      const text = texts[i];
      if (!text) continue;
      const hit = cache?.get(text);
      if (hit && used + hit.pieces <= g.maxPieces) {
        known.push(hit);
        used += hit.pieces;
        continue;
      }
      const from = windows.length;
      const all = c.windows(text, g.pieceTokens);
      for (const w of all) {
        if (used < g.maxPieces) {
          windows.push(w);
          used++;
        } else unchecked += w.length;
      }
      fresh.push({ text, from, to: windows.length, whole: windows.length - from === all.length });
    }
    if (unchecked > 0 && g.overflow === 'block')
      return {
        check: 'classifier',
        verdict: 'block',
        data: { categories: ['too_long'], max_pieces: g.maxPieces, unchecked_tokens: unchecked },
      };
    if (used === 0) return { check: 'classifier', verdict: 'pass' };
    const results = await c.classifyIds(windows);
    for (const f of fresh) {
      const scores: Record<string, number> = {};
      for (const r of results.slice(f.from, f.to)) maxInto(scores, r.scores);
      const entry = { scores, pieces: f.to - f.from };
      known.push(entry);
      // Only a text read whole is remembered: one cut short by maxPieces is read again next time.
      if (cache && f.whole) cache.set(f.text, entry);
    }
    const scores: Record<string, number> = {};
    for (const k of known) maxInto(scores, k.scores);
    const hit = [...thresholds].filter(([l, t]) => (scores[l] ?? 0) >= t).map(([l]) => l);
    const data: JsonObject = {
      categories: hit,
      thresholds: Object.fromEntries(thresholds),
      scores: Object.fromEntries(Object.entries(scores).map(([l, p]) => [l, round4(p)])),
      pieces: used,
    };
    if (unchecked > 0) data.unchecked_tokens = unchecked;
    return { check: 'classifier', verdict: hit.length ? cfg.action : 'pass', data };
  };
}

/** A text's scores (each label's maximum over its windows) and how many windows it took. */
interface Known {
  scores: Record<string, number>;
  pieces: number;
}

function maxInto(into: Record<string, number>, scores: Record<string, number>): void {
  for (const [label, p] of Object.entries(scores)) into[label] = Math.max(into[label] ?? 0, p);
}
