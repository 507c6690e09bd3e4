import type { CausalLM } from './causalLM.js';
import { Detokenizer } from './detokenizer.js';
import { concatRows, type KvCache, resizeLeft, selectRows, truncate } from './kv.js';
import { promptLookup } from './lookup.js';
import { PrefixCache, type TokenScore } from './prefixCache.js';
import { logSoftmax, logSumExp, rng, type SamplingParams, sample, topK } from './sampling.js';
import { StopMatcher } from './stop.js';

export interface GenerateOptions extends Partial<SamplingParams> {
  /** 0 returns at once with no tokens and no prompt scores (score a prompt alone with CausalLM.score). */
  maxTokens: number;
  seed?: number;
  stop?: string[];
  /** OpenAI's penalties on tokens already generated: presence once per token, frequency per occurrence. */
  presencePenalty?: number;
  frequencyPenalty?: number;
  /** Hugging Face's repetition penalty over prompt and generated tokens (1 = off; > 1 discourages repeats). */
  repetitionPenalty?: number;
  /** OpenAI's logit_bias: added to a token's logit before sampling (-100 bans it, 100 forces it). */
  logitBias?: ReadonlyMap<number, number>;
  /** Keep going past end-of-sequence tokens (vLLM's ignore_eos): fixed-length runs for benchmarks and tests. */
  ignoreEos?: boolean;
  /**
   * Log-probabilities to report per generated token: undefined = none (cheapest), 0 = the chosen token's, k = also
   * the k most likely alternatives.
   */
  topLogprobs?: number;
  /**
   * Also score the prompt itself, from the prefill pass that runs anyway (vLLM's prompt_logprobs; OpenAI's echo
   * with logprobs): each prompt token after the first with its log-probability and the k most likely alternatives.
   */
  promptLogprobs?: number;
  signal?: AbortSignal;
  /** Called with each piece of text as it becomes final (stop strings are never emitted). */
  onText?: (delta: string, token: GeneratedToken | undefined) => void;
}

export interface GeneratedToken {
  id: number;
  text: string;
  /** The token's raw bytes; filled only when log-probabilities were asked for. */
  bytes: number[];
  /** Present when the request asked for log-probabilities. */
  logprob?: number;
  top: { id: number; text: string; bytes: number[]; logprob: number }[];
}

/** A prompt token's log-probability and its k most likely alternatives (the prefix cache keeps them too). */
export type PromptTokenScore = TokenScore;

export interface GenerateResult {
  text: string;
  tokens: GeneratedToken[];
  finishReason: 'stop' | 'length';
  promptTokens: number;
  /** With `promptLogprobs`: scores of prompt tokens 1..n-1 (the first has no context to be scored in). */
  promptScores?: PromptTokenScore[];
}

export class QueueFullError extends Error {
  constructor(readonly limit: number) {
    super(`The model is busy: ${limit} requests are already waiting. Retry shortly.`);
  }
}

export class AbortedError extends Error {
  constructor() {
    super('generation cancelled');
  }
}

interface Seq {
  prompt: number[];
  opts: GenerateOptions;
  params: SamplingParams;
  random: () => number;
  stop: StopMatcher;
  detok: Detokenizer;
  /** Current prompt-lookup draft length (adapts to how often drafts are kept). */
  draftLength: number;
  tokens: GeneratedToken[];
  ids: number[];
  promptScores?: PromptTokenScore[];
  finish?: 'stop' | 'length';
  resolve: (r: GenerateResult) => void;
  reject: (e: Error) => void;
}

export interface EngineOptions {
  /** Sequences decoded together in one forward pass. */
  maxBatch: number;
  /** Draft tokens per prompt-lookup check for a lone greedy sequence (0 = off). */
  promptLookup: number;
  /** Most logits (floats) one prefill pass may return; longer prompts are prefilled in chunks. Default 16M (64 MB). */
  prefillLogitsBudget?: number;
  /**
   * Most prompt positions one prefill pass feeds (default: no limit beyond the logits budget). Running sequences take
   * a decode step between a prompt's passes, so a long prompt holds them up by one chunk instead of its whole prefill
   * (vLLM's chunked prefill), and no single pass keeps the event loop for long.
   */
  prefillChunkTokens?: number;
  /** Requests allowed to wait for a place; beyond it a request is refused (429) rather than queued forever. */
  queueLimit: number;
  /** Bytes of finished sequences' keys and values kept for prompts that start the same way (0 or unset = off). */
  prefixCacheBytes?: number;
  /** A prefix cache shared with others using the same model (takes the place of prefixCacheBytes). */
  prefixCache?: PrefixCache;
  /**
   * Most bytes the batch's key/value cache may reach (unset = no limit). The cache is padded to the batch's longest
   * sequence and each step's output is a second copy of it, so a sequence is admitted only while the batch, each
   * sequence grown to its prompt plus max tokens, stays within the budget; one sequence is always admitted.
   */
  kvBudgetBytes?: number;
}

/**
 * Applies the request's repetition penalties to a logits row, in place (the row is this step's own copy). Log-
 * probabilities reported afterwards are of the penalised distribution, the one the token was drawn from.
 */
function penalize(logits: Float32Array, s: Seq): void {
  const { presencePenalty: pres = 0, frequencyPenalty: freq = 0, repetitionPenalty: rep = 1, logitBias } = s.opts;
  if (logitBias) for (const [id, bias] of logitBias) if (id < logits.length) logits[id] = (logits[id] as number) + bias;
  if (pres === 0 && freq === 0 && rep === 1) return;
  const counts = new Map<number, number>();
  for (const id of s.ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  if (rep !== 1) {
    for (const id of new Set([...s.prompt, ...s.ids])) {
      const v = logits[id] as number;
      logits[id] = v > 0 ? v / rep : v * rep;
    }
  }
  for (const [id, n] of counts) logits[id] = (logits[id] as number) - pres - freq * n;
}

const DEFAULT_LOGITS_BUDGET = 16 * 1024 * 1024;

/**
 * What one more prefill pass costs, in padded prompt rows: a pass's fixed overhead (graph launch, tensor conversion)
 * is about what a handful of rows of compute costs for this family's models; for larger models it is less, and
 * splitting is then only more worthwhile, so erring high only keeps a little padding.
 */
const PASS_COST_ROWS = 8;

/**
 * Prefill groups for prompts of these lengths: one pass pads every prompt to its longest, so a short prompt prefilled
 * with a long one costs as much as the long one. Prompts are taken shortest first and cut into consecutive groups
 * that minimise padded rows plus PASS_COST_ROWS per pass (exact, by dynamic programming over the sorted lengths).
 * Returns indices into `lengths`, shortest group first.
 */
export function prefillGroups(lengths: readonly number[], passCost = PASS_COST_ROWS): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => (lengths[a] as number) - (lengths[b] as number));
  const len = order.map((i) => lengths[i] as number);
  const best = [0];
  const cut = [0];
  for (let j = 1; j <= len.length; j++) {
    best[j] = Number.POSITIVE_INFINITY;
    for (let i = 0; i < j; i++) {
      const cost = (best[i] as number) + (len[j - 1] as number) * (j - i) + passCost;
      if (cost < (best[j] as number)) {
        best[j] = cost;
        cut[j] = i;
      }
    }
  }
  const groups: number[][] = [];
  for (let j = len.length; j > 0; j = cut[j] as number) groups.unshift(order.slice(cut[j], j));
  return groups;
}

/** One position's logits, as a view (no copy). */
function row(out: { logits: Float32Array; vocab: number }, index: number): Float32Array {
  return out.logits.subarray(index * out.vocab, (index + 1) * out.vocab);
}

/**
 * Continuous batching: every decode step runs all active sequences in one forward pass; new requests are prefilled
 * and merged into the running batch between steps, and finished ones leave it, so concurrent requests share the
 * model's matrix products instead of queueing behind each other.
 */
export class GenerationEngine {
  private readonly waiting: Seq[] = [];
  private active: Seq[] = [];
  private kv: KvCache | null = null;
  private mask: number[][] = [];
  /** The prefill in progress (one chunk per turn of the loop while other sequences decode). */
  private prefilling: AsyncGenerator<void, void, void> | null = null;
  /** Sequences taken from the queue by that prefill and not yet in the batch (they count as active). */
  private admitting = 0;
  private running = false;
  /** Prompt-lookup statistics: draft tokens proposed and kept. */
  drafted = 0;
  acceptedDrafts = 0;
  /**
   * Running totals since the engine started, for the server's /metrics: prompt tokens prefilled, prompt tokens taken
   * from the prefix cache instead, tokens generated, requests refused.
   */
  readonly totals = { promptTokens: 0, cachedPromptTokens: 0, generatedTokens: 0, refused: 0 };
  private readonly prefixes: PrefixCache | undefined;

  constructor(
    private readonly lm: CausalLM,
    private readonly opts: EngineOptions,
  ) {
    if (lm.hasCache)
      this.prefixes =
        opts.prefixCache ??
        ((opts.prefixCacheBytes ?? 0) > 0 ? new PrefixCache(opts.prefixCacheBytes as number) : undefined);
  }

  /** True when a new request would be refused. */
  private get full(): boolean {
    return this.waiting.length >= this.opts.queueLimit;
  }

  /**
   * Throws (and counts, as generate does) the refusal a new request would meet now, for callers that must answer
   * before they start generating (a stream that has not opened yet).
   */
  checkRoom(): void {
    if (!this.full) return;
    this.totals.refused++;
    throw new QueueFullError(this.opts.queueLimit);
  }

  /** Most requests that may wait for a place at once. */
  get queueLimit(): number {
    return this.opts.queueLimit;
  }

  get load(): { active: number; waiting: number } {
    return { active: this.active.length + this.admitting, waiting: this.waiting.length };
  }

  generate(prompt: number[], opts: GenerateOptions): Promise<GenerateResult> {
    if (prompt.length === 0) return Promise.reject(new Error('empty prompt'));
    try {
      this.lm.checkFits(prompt.length);
      this.checkRoom();
    } catch (err) {
      return Promise.reject(err);
    }
    if (opts.signal?.aborted) return Promise.reject(new AbortedError());
    // A prefill would sample one token before any length check could stop it.
    if (opts.maxTokens <= 0)
      return Promise.resolve({ text: '', tokens: [], finishReason: 'length', promptTokens: prompt.length });
    return new Promise((resolve, reject) => {
      this.waiting.push({
        prompt,
        opts,
        params: {
          temperature: opts.temperature ?? 1,
          topK: opts.topK ?? 0,
          topP: opts.topP ?? 1,
          minP: opts.minP ?? 0,
        },
        random: rng(opts.seed ?? Math.floor(Math.random() * 2 ** 32)),
        stop: new StopMatcher(opts.stop ?? []),
        detok: new Detokenizer(this.lm.tokenizer),
        draftLength: this.opts.promptLookup,
        tokens: [],
        ids: [],
        resolve,
        reject,
      });
      // Started after the current tick's code: requests submitted together are prefilled together in one pass.
      queueMicrotask(() => void this.loop());
    });
  }

  private async loop(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.waiting.length || this.active.length || this.prefilling) {
        this.dropCancelled();
        try {
          if (!this.prefilling && this.waiting.length && this.active.length < this.opts.maxBatch)
            this.prefilling = this.admit();
          if (this.prefilling) await this.prefillChunk(this.prefilling);
          if (this.active.length) await this.step();
        } catch (err) {
          // A failed forward pass fails the sequences in it (admit fails its own); requests still waiting were not
          // part of it and are served next, and a prefill paused between chunks (its cache its own) goes on.
          for (const s of this.active) s.reject(err as Error);
          this.active = [];
          this.kv = null;
          this.mask = [];
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** Advances the prefill in progress by one pass; it is over once it finishes or fails (failing its sequences). */
  private async prefillChunk(prefill: AsyncGenerator<void, void, void>): Promise<void> {
    try {
      if ((await prefill.next()).done) this.prefilling = null;
    } catch (err) {
      this.prefilling = null;
      throw err;
    }
  }

  private dropCancelled(): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const s = this.waiting[i] as Seq;
      if (s.opts.signal?.aborted) {
        this.waiting.splice(i, 1);
        s.reject(new AbortedError());
      }
    }
    const keep = this.active.map((s, i) => (s.opts.signal?.aborted ? -1 : i)).filter((i) => i >= 0);
    if (keep.length === this.active.length) return;
    for (const s of this.active) if (s.opts.signal?.aborted) s.reject(new AbortedError());
    this.retain(keep);
  }

  /**
   * Prefills waiting prompts (left-padded, in groups of similar length) and merges them into the running batch. A
   * generator: it pauses after each prefill pass that leaves more to do while other sequences are decoding.
   */
  private async *admit(): AsyncGenerator<void, void, void> {
    const room = Math.min(this.opts.maxBatch - this.active.length, this.roomInBudget());
    if (room <= 0) return;
    const fresh = this.waiting.splice(0, room);
    this.admitting = fresh.length;
    try {
      // A prompt that starts like a cached sequence is prefilled alone from where the cached part ends. A prompt
      // asking for its own scores needs every position's: it starts from a cached sequence whose prompt was scored
      // (a scoring client's next call, e.g. speculative EFT's, extends the last one), else from scratch.
      const cold: Seq[] = [];
      for (const s of fresh) {
        const hit = this.prefixes?.match(s.prompt, s.opts.promptLogprobs);
        if (hit) {
          if (hit.scores) s.promptScores = hit.scores;
          yield* this.prefill([s], hit);
        } else cold.push(s);
      }
      for (const group of prefillGroups(cold.map((s) => s.prompt.length))) {
        yield* this.prefill(group.map((i) => cold[i] as Seq));
      }
    } catch (err) {
      // Not yet in the batch, so the loop's clean-up would not see them: fail them here (settling twice is harmless).
      for (const s of fresh) s.reject(err as Error);
      throw err;
    } finally {
      this.admitting = 0;
    }
  }

  /**
   * How many waiting sequences, taken in order, fit the KV budget with the active ones (at least one when nothing is
   * active). A sequence's final length is its prompt plus its max tokens, bounded by the context.
   */
  private roomInBudget(): number {
    const budget = this.opts.kvBudgetBytes;
    if (budget === undefined || !this.lm.hasCache) return this.waiting.length;
    // Keys and values, every layer, float32; twice over: the cache fed in and the step's output.
    const perToken = 2 * this.lm.layers * 2 * this.lm.kvHeads * this.lm.headDim * 4;
    const finalLength = (q: Seq) => Math.min(this.lm.contextLength, q.prompt.length + q.opts.maxTokens);
    let longest = Math.max(0, ...this.active.map(finalLength));
    let rows = this.active.length;
    let n = 0;
    for (const q of this.waiting) {
      const next = Math.max(longest, finalLength(q));
      if ((rows + 1) * next * perToken > budget && rows > 0) break;
      longest = next;
      rows++;
      n++;
    }
    return n;
  }

  /** Prefills prompts together; `from` (one prompt only) is a cached prefix of it to start after. */
  private async *prefill(fresh: Seq[], from?: { length: number; kv: KvCache }): AsyncGenerator<void, void, void> {
    const offset = from?.length ?? 0;
    for (const s of fresh) this.totals.promptTokens += s.prompt.length - offset;
    this.totals.cachedPromptTokens += offset;
    const len = Math.max(...fresh.map((s) => s.prompt.length));
    const ids = fresh.map((s) => [...Array(len - s.prompt.length).fill(this.lm.tokenizer.padId), ...s.prompt]);
    const mask = fresh.map((s) => [...Array(len - s.prompt.length).fill(0), ...s.prompt.map(() => 1)]);
    const positions = fresh.map((s) => Array.from({ length: len }, (_, i) => Math.max(0, i - (len - s.prompt.length))));
    // A graph returns logits for every position: with a large vocabulary a long prompt's logits alone could take
    // gigabytes, so prompts are fed in chunks that keep them within a budget, the cache carrying over.
    const vocab = this.lm.folder.config.vocab_size ?? this.lm.tokenizer.vocabSize;
    const chunk = this.lm.hasCache
      ? Math.max(
          1,
          Math.min(
            Math.floor((this.opts.prefillLogitsBudget ?? DEFAULT_LOGITS_BUDGET) / (fresh.length * vocab)),
            this.opts.prefillChunkTokens ?? Number.POSITIVE_INFINITY,
          ),
        )
      : len;
    let past = from?.kv ?? (this.lm.hasCache ? this.lm.emptyCache(fresh.length) : null);
    let out: Awaited<ReturnType<CausalLM['forward']>> | undefined;
    let last = 0;
    for (let start = offset; start < len; start += chunk) {
      const end = Math.min(len, start + chunk);
      out = await this.lm.forward({
        ids: ids.map((r) => r.slice(start, end)),
        mask: mask.map((r) => r.slice(0, end)),
        positions: positions.map((r) => r.slice(start, end)),
        past,
      });
      past = out.present;
      last = end - start;
      for (const [b, s] of fresh.entries())
        if (s.opts.promptLogprobs !== undefined) this.scorePrompt(s, out, b, start, end, len);
      if (end === len) break;
      if (fresh.every((s) => s.opts.signal?.aborted)) {
        // Every client of this prefill has gone: stop feeding it (a long prompt on a large model is seconds).
        for (const s of fresh) s.reject(new AbortedError());
        this.admitting -= fresh.length;
        return;
      }
      // Let the running sequences take a step before the next chunk (with nothing running, go straight on).
      if (this.active.length) yield;
    }
    if (!out) return;
    for (const [b, s] of fresh.entries()) this.accept(s, row(out, b * last + last - 1));
    if (this.lm.hasCache) {
      const present = out.present as KvCache;
      if (this.kv && this.active.length) {
        const length = Math.max(this.kv.length, present.length);
        this.kv = concatRows(resizeLeft(this.kv, length), resizeLeft(present, length));
        this.mask = [...this.mask, ...mask].map((m) => [...Array(length - m.length).fill(0), ...m]);
      } else {
        this.kv = present;
        this.mask = mask;
      }
    }
    this.active.push(...fresh);
    this.admitting -= fresh.length;
    this.finishDone();
  }

  /** Scores the prompt tokens a prefill chunk predicted (row j predicts the token after position start + j). */
  private scorePrompt(
    s: Seq,
    out: { logits: Float32Array; vocab: number },
    b: number,
    start: number,
    end: number,
    len: number,
  ): void {
    const offset = len - s.prompt.length;
    const k = s.opts.promptLogprobs ?? 0;
    s.promptScores ??= [];
    for (let p = Math.max(start, offset); p < end; p++) {
      const next = p - offset + 1;
      if (next >= s.prompt.length) break;
      const lp = logSoftmax(out.logits, (b * (end - start) + (p - start)) * out.vocab, out.vocab);
      s.promptScores.push({
        logprob: lp[s.prompt[next] as number] as number,
        top: k > 0 ? topK(lp, k).map((c) => ({ id: c.id, logprob: c.value })) : [],
      });
    }
  }

  /** One decode step for every active sequence. */
  private async step(): Promise<void> {
    const only = this.active.length === 1 ? this.active[0] : undefined;
    if (
      only &&
      this.opts.promptLookup > 0 &&
      this.lm.hasCache &&
      only.params.temperature <= 0 &&
      (await this.speculate(only))
    ) {
      this.finishDone();
      return;
    }
    const last = this.active.map((s) => s.ids.at(-1) as number);
    let out: Awaited<ReturnType<CausalLM['forward']>>;
    if (this.lm.hasCache) {
      // The rows are the engine's own: grow them in place rather than copy every row every step.
      for (const m of this.mask) m.push(1);
      out = await this.lm.forward({
        ids: last.map((t) => [t]),
        mask: this.mask,
        positions: this.active.map((s) => [s.prompt.length + s.ids.length - 1]),
        past: this.kv,
      });
      this.kv = out.present;
      for (const [b, s] of this.active.entries()) this.accept(s, row(out, b));
    } else {
      // Without a cache every step re-reads the whole (left-padded) sequence.
      const seqs = this.active.map((s) => [...s.prompt, ...s.ids]);
      const len = Math.max(...seqs.map((x) => x.length));
      const ids = seqs.map((x) => [...Array(len - x.length).fill(this.lm.tokenizer.padId), ...x]);
      const mask = seqs.map((x) => [...Array(len - x.length).fill(0), ...x.map(() => 1)]);
      const positions = seqs.map((x) => Array.from({ length: len }, (_, i) => Math.max(0, i - (len - x.length))));
      out = await this.lm.forward({ ids, mask, positions, past: null });
      for (const [b, s] of this.active.entries()) this.accept(s, row(out, b * len + len - 1));
    }
    this.finishDone();
  }

  /**
   * Prompt-lookup speculation for a lone greedy sequence: tokens that followed the latest earlier occurrence of the
   * current n-gram are checked in one forward pass, and every draft token the model itself would have chosen is
   * kept. The output is exactly that of one-token-at-a-time greedy decoding; only the number of passes drops
   * (repetitive text, quoting, extraction). Returns false when there is nothing to draft.
   */
  private async speculate(s: Seq): Promise<boolean> {
    const kv = this.kv as KvCache;
    const room = Math.min(
      s.opts.maxTokens - s.ids.length - 1,
      this.lm.contextLength - s.prompt.length - s.ids.length - 1,
    );
    const draft = promptLookup([...s.prompt, ...s.ids], 3, Math.min(s.draftLength, room), 2);
    if (draft.length === 0) return false;
    const input = [s.ids.at(-1) as number, ...draft];
    const first = s.prompt.length + s.ids.length - 1;
    const mask = [...(this.mask[0] as number[]), ...input.map(() => 1)];
    const out = await this.lm.forward({
      ids: [input],
      mask: [mask],
      positions: [input.map((_, j) => first + j)],
      past: kv,
    });
    let kept = 1;
    for (let j = 0; j < input.length; j++) {
      this.accept(s, row(out, j));
      if (s.finish || j === draft.length || s.ids.at(-1) !== draft[j]) break;
      kept++;
    }
    this.drafted += draft.length;
    this.acceptedDrafts += kept - 1;
    // Draft more while drafts are taken whole, fewer as they fail (a failed check costs a wider forward pass).
    s.draftLength =
      kept - 1 === draft.length ? Math.min(this.opts.promptLookup, s.draftLength + 2) : Math.max(1, s.draftLength - 1);
    this.kv = truncate(out.present as KvCache, kv.length + kept);
    this.mask = [mask.slice(0, kv.length + kept)];
    return true;
  }

  /** Samples the next token of one sequence from its logits row and releases whatever text became final. */
  private accept(s: Seq, logits: Float32Array): void {
    penalize(logits, s);
    const id = sample(logits, s.params, s.random);
    const tok = this.lm.tokenizer;
    if (this.lm.eos.has(id) && !s.opts.ignoreEos) {
      s.finish = 'stop';
      return;
    }
    const k = s.opts.topLogprobs;
    // The normaliser is a pass over the vocabulary per token: only when log-probabilities were asked for.
    const lse = k === undefined ? 0 : logSumExp(logits);
    const token: GeneratedToken = {
      id,
      text: tok.tokenText(id),
      // Bytes only matter to log-probability output (a token may be part of a character).
      bytes: k === undefined ? [] : tok.tokenBytes(id),
      logprob: k === undefined ? undefined : (logits[id] as number) - lse,
      top:
        k !== undefined && k > 0
          ? topK(logits, k).map((c) => ({
              id: c.id,
              text: tok.tokenText(c.id),
              bytes: tok.tokenBytes(c.id),
              logprob: c.value - lse,
            }))
          : [],
    };
    s.ids.push(id);
    s.tokens.push(token);
    this.totals.generatedTokens++;
    const { delta, stopped } = s.stop.push(s.detok.push(id));
    if (delta || !stopped) s.opts.onText?.(delta, token);
    if (stopped) s.finish = 'stop';
    else if (s.ids.length >= s.opts.maxTokens || s.prompt.length + s.ids.length >= this.lm.contextLength)
      s.finish = 'length';
  }

  private finishDone(): void {
    const keep: number[] = [];
    this.active.forEach((s, i) => {
      if (!s.finish) {
        keep.push(i);
        return;
      }
      this.keepPrefix(s, i);
      const rest = s.stop.finish(s.detok.finish());
      if (rest) s.opts.onText?.(rest, undefined);
      s.resolve({
        text: s.stop.text,
        tokens: s.tokens,
        finishReason: s.finish,
        promptTokens: s.prompt.length,
        promptScores: s.promptScores,
      });
    });
    if (keep.length !== this.active.length) this.retain(keep);
  }

  /**
   * Offers a finished sequence's keys and values (batch row `row`, without its left padding) to the prefix cache: the
   * next turn of a conversation starts with this prompt and, usually, this answer.
   */
  private keepPrefix(s: Seq, row: number): void {
    const mask = this.mask[row];
    if (!this.prefixes || !this.kv || !mask) return;
    // The cache holds every token fed so far: the prompt and the answer but its last token, which was never fed.
    const held = mask.length - mask.indexOf(1);
    const ids = [...s.prompt, ...s.ids].slice(0, held);
    if (mask.indexOf(1) < 0 || ids.length !== held) return;
    const k = s.opts.promptLogprobs;
    const scores = k !== undefined && s.promptScores ? { k, rows: s.promptScores } : undefined;
    this.prefixes.put(ids, resizeLeft(selectRows(this.kv, [row]), held), scores);
  }

  /** Keeps the given active rows, dropping the others' cache rows and any all-padding columns on the left. */
  private retain(keep: number[]): void {
    this.active = keep.map((i) => this.active[i] as Seq);
    if (!this.lm.hasCache || !this.kv) return;
    if (keep.length === 0) {
      this.kv = null;
      this.mask = [];
      return;
    }
    this.mask = keep.map((i) => this.mask[i] as number[]);
    let kv = selectRows(this.kv, keep);
    const lead = Math.min(...this.mask.map((m) => m.indexOf(1)));
    if (lead > 0) {
      kv = resizeLeft(kv, kv.length - lead);
      this.mask = this.mask.map((m) => m.slice(lead));
    }
    this.kv = kv;
  }
}
