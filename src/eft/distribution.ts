import { argmax } from '../slm/sampling.js';

export interface WarpParams {
  /** 0 = greedy (all mass on the highest score). */
  temperature: number;
  /** 0 = off. */
  topK: number;
  /** 1 = off. */
  topP: number;
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
    const order = sortedIds(out);
    for (let r = p.topK; r < V; r++) out[order[r] as number] = 0;
    total = 0;
    for (let r = 0; r < p.topK; r++) total += out[order[r] as number] as number;
  }
  if (p.topP < 1) {
    const order = sortedIds(out);
    let acc = 0;
    let r = 0;
    for (; r < V; r++) {
      acc += (out[order[r] as number] as number) / total;
      if (acc >= p.topP) break;
    }
    let kept = 0;
    for (let j = 0; j < V; j++) {
      const id = order[j] as number;
      if (j > r) out[id] = 0;
      else kept += out[id] as number;
    }
    total = kept;
  }
  for (let i = 0; i < V; i++) out[i] = (out[i] as number) / total;
  return out;
}

function sortedIds(w: Float64Array): Uint32Array {
  const ids = new Uint32Array(w.length);
  for (let i = 0; i < ids.length; i++) ids[i] = i;
  return ids.sort((a, b) => (w[b] as number) - (w[a] as number));
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
