/** Log-softmax of one row of logits, in float64 for stable sums. */
export function logSoftmax(logits: Float32Array, offset = 0, length = logits.length - offset): Float32Array {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < length; i++) {
    const v = logits[offset + i] as number;
    if (v > max) max = v;
  }
  let sum = 0;
  for (let i = 0; i < length; i++) sum += Math.exp((logits[offset + i] as number) - max);
  const lse = max + Math.log(sum);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (logits[offset + i] as number) - lse;
  return out;
}

/** log(sum(exp(row))): with it a token's log-probability is `row[id] - lse`, no full log-softmax needed. */
/** log(sum(exp(x))) over `length` values from `offset` (default: the whole row), without overflow. */
export function logSumExp(row: ArrayLike<number>, offset = 0, length = row.length - offset): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = offset; i < offset + length; i++) if ((row[i] as number) > max) max = row[i] as number;
  let sum = 0;
  for (let i = offset; i < offset + length; i++) sum += Math.exp((row[i] as number) - max);
  return max + Math.log(sum);
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  let bestV = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number;
    if (v > bestV) {
      bestV = v;
      best = i;
    }
  }
  return best;
}

/** The k largest entries of a row, largest first. */
export function topK(row: ArrayLike<number>, k: number): { id: number; value: number }[] {
  const out: { id: number; value: number }[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i] as number;
    if (out.length < k) {
      out.push({ id: i, value: v });
      if (out.length === k) out.sort((a, b) => b.value - a.value);
    } else if (v > (out[k - 1] as { value: number }).value) {
      let j = k - 1;
      while (j > 0 && (out[j - 1] as { value: number }).value < v) {
        out[j] = out[j - 1] as { id: number; value: number };
        j--;
      }
      out[j] = { id: i, value: v };
    }
  }
  if (out.length < k) out.sort((a, b) => b.value - a.value);
  return out;
}

/** A small seedable PRNG (mulberry32): same seed, same samples, on every machine. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface SamplingParams {
  /** 0 = greedy. */
  temperature: number;
  topK: number;
  topP: number;
  /** min-p: drop tokens less likely than minP times the most likely one (0 = off; applied after top-p, as in HF). */
  minP?: number;
}

/**
 * Draws one token from logits (or log-probabilities: a constant shift changes nothing) after temperature, then top-k, then top-p over what top-k kept (the order
 * Hugging Face applies them). Greedy at temperature 0, so `temperature: 0` is deterministic whatever the seed.
 */
export function sample(logprobs: Float32Array, p: SamplingParams, random: () => number): number {
  if (p.temperature <= 0) return argmax(logprobs);
  const V = logprobs.length;
  const max = logprobs[argmax(logprobs)] as number;
  const w = (lp: number) => Math.exp((lp - max) / p.temperature);
  // Weights are relative to the most likely token (which weighs 1), so min-p is a plain floor on them.
  const minP = p.minP ?? 0;
  const floored = (v: number) => (v < minP ? 0 : v);
  if (p.topK <= 0 && p.topP >= 1) {
    // Plain temperature sampling over the whole vocabulary: one pass, no sort.
    let total = 0;
    for (let i = 0; i < V; i++) total += floored(w(logprobs[i] as number));
    let r = random() * total;
    for (let i = 0; i < V; i++) {
      const v = floored(w(logprobs[i] as number));
      r -= v;
      if (r <= 0 && v > 0) return i;
    }
    return argmax(logprobs);
  }
  let fullTotal = 0;
  if (p.topK <= 0) for (let i = 0; i < V; i++) fullTotal += w(logprobs[i] as number);
  // Without top-k, grow the candidate list until it holds top-p of the mass.
  for (let k = p.topK > 0 ? Math.min(p.topK, V) : Math.min(64, V); ; k = Math.min(V, k * 4)) {
    const cands = topK(logprobs, k);
    const weights = cands.map((c) => w(c.value));
    const kept = weights.reduce((a, b) => a + b, 0);
    const norm = p.topK > 0 ? kept : fullTotal;
    let n = cands.length;
    let covered = p.topP >= 1;
    if (!covered) {
      let acc = 0;
      for (let i = 0; i < weights.length; i++) {
        acc += (weights[i] as number) / norm;
        if (acc >= p.topP) {
          n = i + 1;
          covered = true;
          break;
        }
      }
    }
    if (!covered && p.topK <= 0 && k < V) continue;
    // min-p after top-k and top-p, as Hugging Face orders them; the top candidate (weight 1) always stays.
    for (let i = 0; i < n; i++) weights[i] = floored(weights[i] as number);
    const total = weights.slice(0, n).reduce((a, b) => a + b, 0);
    let r = random() * total;
    for (let i = 0; i < n; i++) {
      r -= weights[i] as number;
      if (r <= 0) return (cands[i] as { id: number }).id;
    }
    return (cands[n - 1] as { id: number }).id;
  }
}
