/** A fine-tuned small model's log-probabilities and its weight in the behaviour mix. */
export interface ExpertRow {
  logprobs: ArrayLike<number>;
  weight: number;
}

/**
 * EFT / proxy-tuning: log p_large + beta * sum_j w_j (log p_ft_j - log p_base), renormalised. Tokens the large
 * model's support leaves out (-Infinity, as from top-k logprobs) stay out. Returns normalised log-probabilities.
 */
export function eftLogprobs(
  large: ArrayLike<number>,
  experts: readonly ExpertRow[],
  base: ArrayLike<number>,
  beta: number,
): Float64Array {
  const V = large.length;
  const out = new Float64Array(V);
  let max = Number.NEGATIVE_INFINITY;
  for (let t = 0; t < V; t++) {
    const l = large[t] as number;
    if (l === Number.NEGATIVE_INFINITY) {
      out[t] = l;
      continue;
    }
    let delta = 0;
    if (beta !== 0) {
      const b = base[t] as number;
      for (const e of experts) delta += e.weight * ((e.logprobs[t] as number) - b);
    }
    const s = l + beta * delta;
    out[t] = s;
    if (s > max) max = s;
  }
  let sum = 0;
  for (let t = 0; t < V; t++) sum += Math.exp((out[t] as number) - max);
  const lse = max + Math.log(sum);
  for (let t = 0; t < V; t++) out[t] = (out[t] as number) - lse;
  return out;
}
