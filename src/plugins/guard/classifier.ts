import type { Classifier } from '../../slm/classifier.js';
import type { JsonObject } from '../types.js';
import type { GuardCheck } from './check.js';
import type { GuardConfig } from './schema.js';

const round = (x: number) => Math.round(x * 1e4) / 1e4;

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
  const unknown = Object.keys(per).filter((l) => !c.labels.includes(l));
  if (unknown.length)
    throw new Error(
      `guard: classifier '${cfg.model}' has no label ${unknown.join(', ')} (labels: ${c.labels.join(', ')})`,
    );
  const wanted = cfg.labels ?? c.labels;
  const missing = wanted.filter((l) => !c.labels.includes(l));
  if (missing.length)
    throw new Error(
      `guard: classifier '${cfg.model}' has no label ${missing.join(', ')} (labels: ${c.labels.join(', ')})`,
    );
  return new Map(wanted.map((l) => [l, typeof per[l] === 'number' ? (per[l] as number) : base]));
}

/**
 * The safety classifier on every text, read whole: each text is cut into overlapping windows of the model's length
 * (a classifier that silently truncated would let anything past its limit through). Windows are taken from the
 * newest text backwards, so when a request has more than `maxPieces` the message being answered is the one checked.
 */
export function classifierCheck(c: Classifier, g: GuardConfig): GuardCheck {
  const cfg = g.classifier as NonNullable<GuardConfig['classifier']>;
  const thresholds = labelThresholds(c, cfg);
  return async (texts) => {
    const windows: number[][] = [];
    let unchecked = 0;
    for (let i = texts.length - 1; i >= 0; i--) {
      const text = texts[i];
      if (!text) continue;
      for (const w of c.windows(text, g.pieceTokens)) {
        if (windows.length < g.maxPieces) windows.push(w);
        else unchecked += w.length;
      }
    }
    if (unchecked > 0 && g.overflow === 'block')
      return {
        check: 'classifier',
        verdict: 'block',
        data: { categories: ['too_long'], max_pieces: g.maxPieces, unchecked_tokens: unchecked },
      };
    if (windows.length === 0) return { check: 'classifier', verdict: 'pass' };
    const scores: Record<string, number> = {};
    for (const r of await c.classifyIds(windows))
      for (const [label, p] of Object.entries(r.scores)) scores[label] = Math.max(scores[label] ?? 0, p);
    const hit = [...thresholds].filter(([l, t]) => (scores[l] ?? 0) >= t).map(([l]) => l);
    const data: JsonObject = {
      categories: hit,
      thresholds: Object.fromEntries(thresholds),
      scores: Object.fromEntries(Object.entries(scores).map(([l, p]) => [l, round(p)])),
      pieces: windows.length,
    };
    if (unchecked > 0) data.unchecked_tokens = unchecked;
    return { check: 'classifier', verdict: hit.length ? cfg.action : 'pass', data };
  };
}
