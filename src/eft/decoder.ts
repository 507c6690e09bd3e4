import { Detokenizer } from '../slm/detokenizer.js';
import { rng, topK } from '../slm/sampling.js';
import { StopMatcher } from '../slm/stop.js';
import type { TextTokenizer } from '../slm/tokenizer.js';
import { eftLogprobs } from './combine.js';
import { draw, type WarpParams, warp } from './distribution.js';
import type { LargeDist, LargeModel } from './large.js';
import type { Track } from './track.js';

export interface EftExpert {
  track: Track;
  weight: number;
}

export interface EftModels {
  large: LargeModel;
  /** Fine-tuned small models (each seeing the chat template); with the base, they draft in speculative mode. */
  experts: EftExpert[];
  /** The small base model (seeing the raw prompt). */
  base: Track;
  tokenizer: TextTokenizer;
  eos: ReadonlySet<number>;
}

export interface EftParams extends WarpParams {
  beta: number;
  maxTokens: number;
  stop: string[];
  seed: number;
  /** Draft tokens per speculative round (0 = token by token). */
  gamma: number;
  /**
   * Report each token's log-probability under the EFT distribution (before temperature, top-k and top-p, as OpenAI
   * and vLLM report a model's) with this many alternatives; undefined = none.
   */
  logprobs?: number;
}

/** A generated token's log-probability under the EFT distribution and its most likely alternatives. */
export interface ScoredToken {
  id: number;
  logprob: number;
  top: { id: number; logprob: number }[];
}

/** A token drawn, with the EFT log-probabilities (before warping) of the position it was drawn at. */
interface Drawn {
  id: number;
  lp: Float64Array;
}

export interface EftStats {
  beta: number;
  mode: 'token' | 'speculative';
  large_kind: string;
  upstream_calls: number;
  drafted_tokens: number;
  accepted_tokens: number;
  /** Share of the large model's probability mass its returned support held: mean and minimum over the steps. */
  covered_mass_mean: number;
  covered_mass_min: number;
}

export interface EftResult {
  ids: number[];
  /** With `logprobs`: one per id. */
  scores?: ScoredToken[];
  text: string;
  finishReason: 'stop' | 'length';
  stats: EftStats;
}

/**
 * The large model's top-k with the rest of the vocabulary filled in: the mass the top-k left, in the small base's
 * proportions over the tokens the top-k did not name.
 */
export function fillFromBase(large: LargeDist, base: Float32Array): Float32Array {
  const out = Float32Array.from(large.logprobs);
  let rest = 0;
  for (let i = 0; i < out.length; i++) if (out[i] === Number.NEGATIVE_INFINITY) rest += Math.exp(base[i] as number);
  if (rest <= 0) return out;
  const shift = Math.log(Math.max(1 - large.covered, 1e-9)) - Math.log(rest);
  for (let i = 0; i < out.length; i++) if (out[i] === Number.NEGATIVE_INFINITY) out[i] = (base[i] as number) + shift;
  return out;
}

/**
 * Emulated fine-tuning (Mitchell et al. 2023) / proxy-tuning (Liu et al. 2024): each token is drawn from
 * softmax(log p_large + beta * sum_j w_j (log p_ft_j - log p_base)) after temperature, top-k and top-p. In
 * speculative mode the first fine-tuned model drafts `gamma` tokens, the large model scores them in one call, and
 * speculative-sampling acceptance (Leviathan et al. 2023; Chen et al. 2023) keeps the output distribution exactly
 * that of token-by-token decoding.
 */
export class EftDecoder {
  private readonly random: () => number;
  private covered = { sum: 0, n: 0, min: 1 };
  private drafted = 0;
  private accepted = 0;

  constructor(
    private readonly m: EftModels,
    private readonly p: EftParams,
  ) {
    this.random = rng(p.seed);
  }

  /**
   * The EFT distribution the next token is drawn from (`p`, warped), after `generated`, with the large model's row
   * given; `lp` is the same before temperature, top-k and top-p.
   */
  private async target(large: LargeDist, generated: readonly number[]): Promise<{ p: Float64Array; lp: Float64Array }> {
    const [base, ...experts] = await Promise.all([
      this.m.base.next(generated),
      ...this.m.experts.map((e) => e.track.next(generated)),
    ]);
    this.covered.sum += large.covered;
    this.covered.n++;
    this.covered.min = Math.min(this.covered.min, large.covered);
    const lp = eftLogprobs(
      this.m.large.outside === 'base' ? fillFromBase(large, base as Float32Array) : large.logprobs,
      experts.map((row, j) => ({ logprobs: row as Float32Array, weight: (this.m.experts[j] as EftExpert).weight })),
      base as Float32Array,
      this.p.beta,
    );
    return { p: warp(lp, this.p), lp };
  }

  private async tokenStep(generated: number[]): Promise<Drawn[]> {
    const [large] = await Promise.all([
      this.m.large.next(generated),
      this.m.base.next(generated),
      ...this.m.experts.map((e) => e.track.next(generated)),
    ]);
    const { p, lp } = await this.target(large, generated);
    return [{ id: draw(p, this.random), lp }];
  }

  /**
   * The drafter's distribution: EFT with the small base standing in for the large model (with beta 1 and one expert,
   * simply the expert), restricted like the large model's support to the base's top-k when the large model only
   * returns its top-k. The closer q is to the EFT target, the more drafts are kept; the output stays exact for any q.
   */
  private async draftDistribution(prefix: readonly number[]): Promise<Float64Array> {
    const k = this.m.large.supportK;
    const weights = this.m.experts.map((e) => e.weight);
    // With full logits and beta * sum(w) = 1 the base cancels out (beta 1, one expert: q is the expert itself), so
    // the base model is not run for drafts.
    const baseCancels = k === undefined && Math.abs(this.p.beta * weights.reduce((a, b) => a + b, 0) - 1) < 1e-9;
    const [base, ...experts] = (await Promise.all([
      baseCancels ? undefined : this.m.base.next(prefix),
      ...this.m.experts.map((e) => e.track.next(prefix)),
    ])) as [Float32Array | undefined, ...Float32Array[]];
    if (!base) {
      const V = (experts[0] as Float32Array).length;
      const lp = new Float64Array(V);
      for (const [j, row] of experts.entries()) {
        const w = this.p.beta * (weights[j] as number);
        for (let t = 0; t < V; t++) lp[t] = (lp[t] as number) + w * (row[t] as number);
      }
      return warp(lp, this.p);
    }
    let stand: ArrayLike<number> = base;
    if (k !== undefined) {
      const row = new Float32Array(base.length).fill(Number.NEGATIVE_INFINITY);
      for (const c of topK(base, k)) row[c.id] = c.value;
      stand = row;
    }
    const lp = eftLogprobs(
      stand,
      experts.map((row, j) => ({ logprobs: row, weight: weights[j] as number })),
      base,
      this.p.beta,
    );
    return warp(lp, this.p);
  }

  private async speculativeStep(generated: number[], gamma: number): Promise<Drawn[]> {
    const draft: number[] = [];
    const q: Float64Array[] = [];
    for (let i = 0; i < gamma; i++) {
      const qi = await this.draftDistribution([...generated, ...draft]);
      const d = draw(qi, this.random);
      draft.push(d);
      q.push(qi);
      if (this.m.eos.has(d)) break;
    }
    this.drafted += draft.length;
    const all = [...generated, ...draft];
    const [large] = await Promise.all([
      this.m.large.block(generated, draft),
      this.m.base.rowsFor(all),
      ...this.m.experts.map((e) => e.track.rowsFor(all)),
    ]);
    const out: Drawn[] = [];
    for (let i = 0; i < draft.length; i++) {
      // An upstream that stopped scoring blocks returns fewer rows: what was checked so far still stands.
      if (i >= large.length) return out;
      const { p, lp } = await this.target(large[i] as LargeDist, all.slice(0, generated.length + i));
      const { id, kept } = this.acceptOrCorrect(p, q[i] as Float64Array, draft[i] as number);
      out.push({ id, lp });
      if (!kept) return out;
    }
    // Every draft kept: one more token from the target after the whole block (none after an end of sequence).
    const last = large[draft.length];
    if (last && !this.m.eos.has(draft[draft.length - 1] as number)) {
      const { p, lp } = await this.target(last, all);
      out.push({ id: draw(p, this.random), lp });
    }
    return out;
  }

  /**
   * Speculative sampling's test: keeps x with probability min(1, p(x)/q(x)), else draws from max(0, p - q). Returns
   * the token that stands and whether it was the draft kept (a correction ends the block).
   */
  private acceptOrCorrect(p: Float64Array, q: Float64Array, x: number): { id: number; kept: boolean } {
    const px = p[x] as number;
    const qx = q[x] as number;
    if (px >= qx || this.random() < px / qx) {
      this.accepted++;
      return { id: x, kept: true };
    }
    const residual = new Float64Array(p.length);
    let total = 0;
    for (let t = 0; t < p.length; t++) {
      const r = Math.max(0, (p[t] as number) - (q[t] as number));
      residual[t] = r;
      total += r;
    }
    return { id: draw(total > 0 ? residual : p, this.random), kept: false };
  }

  /**
   * Decodes to the end. `onText` gets each piece of text as it becomes final, with the token that released it (and,
   * with `logprobs`, its score: then it is called for every token, even one whose text is still held back).
   */
  async run(signal: AbortSignal, onText?: (delta: string, token?: ScoredToken) => void): Promise<EftResult> {
    const { tokenizer, eos } = this.m;
    const ids: number[] = [];
    const k = this.p.logprobs;
    const scores: ScoredToken[] | undefined = k === undefined ? undefined : [];
    const detok = new Detokenizer(tokenizer);
    const stops = new StopMatcher(this.p.stop);
    let finishReason: 'stop' | 'length' = 'length';
    const speculative = this.p.gamma > 0;
    outer: while (ids.length < this.p.maxTokens) {
      if (signal.aborted) throw signal.reason ?? new Error('aborted');
      const room = this.p.maxTokens - ids.length;
      const next =
        speculative && this.m.large.scoresBlocks && room > 1
          ? await this.speculativeStep(ids, Math.min(this.p.gamma, room - 1))
          : await this.tokenStep(ids);
      for (const { id, lp } of next) {
        if (eos.has(id)) {
          finishReason = 'stop';
          break outer;
        }
        ids.push(id);
        const score =
          k === undefined
            ? undefined
            : { id, logprob: lp[id] as number, top: topK(lp, k).map((c) => ({ id: c.id, logprob: c.value })) };
        if (score) scores?.push(score);
        const { delta, stopped } = stops.push(detok.push(id));
        if (delta || score) onText?.(delta, score);
        if (stopped) {
          finishReason = 'stop';
          break outer;
        }
        if (ids.length >= this.p.maxTokens) break outer;
      }
    }
    const rest = stops.finish(detok.finish());
    if (rest) onText?.(rest);
    // The conversation's next turn starts with this prompt and answer: every local model keeps what it fed.
    this.m.large.keep?.();
    for (const t of [this.m.base, ...this.m.experts.map((e) => e.track)]) t.keep();
    return { ids, scores, text: stops.text, finishReason, stats: this.stats(speculative) };
  }

  private stats(speculative: boolean): EftStats {
    const c = this.covered;
    return {
      beta: this.p.beta,
      mode: speculative && this.m.large.scoresBlocks ? 'speculative' : 'token',
      large_kind: this.m.large.kind,
      upstream_calls: this.m.large.calls,
      drafted_tokens: this.drafted,
      accepted_tokens: this.accepted,
      covered_mass_mean: c.n ? c.sum / c.n : 1,
      covered_mass_min: c.n ? c.min : 1,
    };
  }
}
