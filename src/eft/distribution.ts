import { argmax, topK } from '../slm/sampling.js';

export interface WarpParams {
  /** 0 = greedy (all mass on the highest score). */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
  /** min-p, after top-p: drop tokens less likely than minP times the most likely one (0 = off). */
  minP?: number;
}

/**
 * The distribution a token is drawn from, as explicit probabilities: temperature, then top-k, then top-p over what
 * top-k kept (Hugging Face's order, the same as `sample` in src/slm). Speculative sampling needs the numbers, not
 * just a draw, because it accepts a drafted token with probability p(x) / q(x).
 * `scores` are log-probabilities up to a constant; -Infinity marks tokens outside the support.
 */
export function warp(scores: ArrayLike<number>, p: WarpParams): Float64Array {
  const V = scores.length;
  const out = new Float64Array(V);
  if (p.temperature <= 0) {
    out[argmax(scores)] = 1;
    return out;
  }
  const max = scores[argmax(scores)] as number;
  let total = 0;
  for (let i = 0; i < V; i++) {
    const v = Math.exp(((scores[i] as number) - max) / p.temperature);
    out[i] = v;
    total += v;
  }
  if (p.topK > 0 && p.topK < V) {
    const keep = topK(out, p.topK);
    out.fill(0);
    total = 0;
    for (const c of keep) {
      out[c.id] = c.value;
      total += c.value;
    }
  }
  if (p.topP < 1) {
    // Only tokens still in play are sorted (after top-k, a handful).
    const live: number[] = [];
    for (let i = 0; i < V; i++) if ((out[i] as number) > 0) live.push(i);
    live.sort((a, b) => (out[b] as number) - (out[a] as number));
    let acc = 0;
    let kept = 0;
    let cut = false;
    for (const id of live) {
      if (cut) {
        out[id] = 0;
        continue;
      }
      const v = out[id] as number;
      kept += v;
      acc += v / total;
      if (acc >= p.topP) cut = true;
    }
    total = kept;
  }
  const minP = p.minP ?? 0;
  if (minP > 0) {
    // out[] is relative to the most likely token, which weighs exactly 1 and so always stays.
    for (let i = 0; i < V; i++) {
      const v = out[i] as number;
      if (v > 0 && v < minP) {
        out[i] = 0;
        total -= v;
      }
    }
  }
  for (let i = 0; i < V; i++) out[i] = (out[i] as number) / total;
  return out;
}

/** One draw from explicit probabilities (they need not sum to exactly 1). */
export function draw(probs: ArrayLike<number>, random: () => number): number {
  let total = 0;
  for (let i = 0; i < probs.length; i++) total += probs[i] as number;
  let r = random() * total;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    const v = probs[i] as number;
    if (v <= 0) continue;
    last = i;
    r -= v;
    if (r <= 0) return i;
  }
  return last;
}
