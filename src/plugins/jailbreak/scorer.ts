import { LRUCache } from 'lru-cache';
import type { CausalLM } from '../../slm/causalLM.js';
import { logSumExp } from '../../slm/sampling.js';

/** Negative log-likelihood of one window: the sum over its scored tokens, with their count, bytes and characters. */
export interface Nll {
  sum: number;
  tokens: number;
  bytes: number;
  chars: number;
}

/** Which end of a window survives when it has more tokens than the model's context. */
export type Keep = 'head' | 'tail';

export interface WindowRequest {
  text: string;
  keep: Keep;
}

export type Unit = 'byte' | 'token';

/** exp(mean NLL) per token (as NeMo's GPT-2 check) or per UTF-8 byte; undefined when nothing was scored. */
export function perplexity(n: Nll, unit: Unit): number | undefined {
  const d = unit === 'byte' ? n.bytes : n.tokens;
  return d > 0 ? Math.exp(n.sum / d) : undefined;
}

interface Prepared {
  key: string;
  /** Model input: the start-of-document token (when the model has one) then the window's tokens. */
  row: number[];
  /** Index in `row` of the first token whose log-probability counts. */
  first: number;
  bytes: number;
  chars: number;
}

export interface ScorerOptions {
  /** Windows run together in one forward pass at most. */
  maxBatch: number;
  /** Windows remembered (conversation history is re-sent every turn); 0 = no cache. */
  cacheSize: number;
}

/**
 * Scores text windows with a causal LM: each window is bounded to the model's context (never a context-length error),
 * conditioned on the model's document separator so its first token counts too, and windows of similar length share
 * one left-padded forward pass.
 */
export class WindowScorer {
  private readonly start: number | undefined;
  private readonly maxTokens: number;
  private readonly cache: LRUCache<string, Nll> | undefined;
  /** False when left padding changes the scores (a graph without an attention mask): then only equal lengths batch. */
  private padOk = true;

  private constructor(
    readonly lm: CausalLM,
    private readonly opts: ScorerOptions,
  ) {
    // The tandem models were pre-trained on documents joined by <|endoftext|>; GPT-2 style vocabularies share it.
    const tok = lm.tokenizer;
    this.start = tok.tokenId('<|endoftext|>') ?? tok.tokenId('<s>');
    this.maxTokens = lm.contextLength - (this.start === undefined ? 0 : 1);
    this.cache = opts.cacheSize > 0 ? new LRUCache({ max: opts.cacheSize }) : undefined;
  }

  /** A scorer whose batching has been checked against one-by-one scoring on this model. */
  static async create(lm: CausalLM, opts: ScorerOptions): Promise<WindowScorer> {
    const s = new WindowScorer(lm, opts);
    const short = s.prepare({ text: 'What is the meaning of the word apple?', keep: 'head' });
    const long = s.prepare({
      text: 'A longer sentence, so that the short one is padded on the left in a batch.',
      keep: 'head',
    });
    const [alone] = await s.forward([short]);
    const [, padded] = await s.forward([long, short]);
    if (!alone || !padded || Math.abs(alone.sum - padded.sum) > 1e-3 * Math.max(1, Math.abs(alone.sum)))
      s.padOk = false;
    return s;
  }

  get contextLength(): number {
    return this.lm.contextLength;
  }

  get batchesPadded(): boolean {
    return this.padOk;
  }

  async score(windows: WindowRequest[], signal?: AbortSignal): Promise<Nll[]> {
    const out: (Nll | undefined)[] = windows.map((w) => this.cache?.get(key(w)));
    const todo = new Map<string, { prep: Prepared; at: number[] }>();
    windows.forEach((w, i) => {
      if (out[i]) return;
      const k = key(w);
      const known = todo.get(k);
      if (known) {
        known.at.push(i);
        return;
      }
      const prep = this.prepare(w);
      // Nothing to score (an empty window, or one token without a start token): no forward pass.
      if (prep.row.length <= prep.first) out[i] = { sum: 0, tokens: 0, bytes: 0, chars: prep.chars };
      else todo.set(k, { prep, at: [i] });
    });
    const jobs = [...todo.values()].sort((a, b) => b.prep.row.length - a.prep.row.length);
    const groups: (typeof jobs)[] = [];
    for (const job of jobs) {
      const g = groups.at(-1);
      const head = g?.[0]?.prep.row.length ?? 0;
      const len = job.prep.row.length;
      const fits = this.padOk ? len * 4 >= head * 3 : len === head;
      if (g && g.length < this.opts.maxBatch && fits) g.push(job);
      else groups.push([job]);
    }
    await Promise.all(
      groups.map(async (g) => {
        signal?.throwIfAborted();
        const scores = await this.forward(g.map((j) => j.prep));
        g.forEach((j, n) => {
          const s = scores[n] as Nll;
          this.cache?.set(j.prep.key, s);
          for (const i of j.at) out[i] = s;
        });
      }),
    );
    return out as Nll[];
  }

  private prepare(w: WindowRequest): Prepared {
    const tok = this.lm.tokenizer;
    const all = tok.encode(w.text);
    const ids =
      all.length <= this.maxTokens
        ? all
        : w.keep === 'head'
          ? all.slice(0, this.maxTokens)
          : all.slice(-this.maxTokens);
    const chars = ids.length === all.length ? w.text.length : tok.decode(ids, false).length;
    const row = this.start === undefined ? ids : [this.start, ...ids];
    const first = 1;
    let bytes = 0;
    for (let i = first; i < row.length; i++) bytes += tok.tokenBytes(row[i] as number).length;
    return { key: key(w), row, first, bytes, chars };
  }

  /** One left-padded forward pass; per row, the summed NLL of the tokens from `first` on. */
  private async forward(batch: Prepared[]): Promise<Nll[]> {
    const width = Math.max(...batch.map((p) => p.row.length));
    const pad = this.lm.tokenizer.padId;
    const ids: number[][] = [];
    const mask: number[][] = [];
    const positions: number[][] = [];
    for (const p of batch) {
      const n = width - p.row.length;
      ids.push([...new Array<number>(n).fill(pad), ...p.row]);
      mask.push([...new Array<number>(n).fill(0), ...p.row.map(() => 1)]);
      positions.push([...new Array<number>(n).fill(0), ...p.row.map((_, i) => i)]);
    }
    const out = await this.lm.forward({ ids, mask, positions, past: null });
    const { logits, vocab } = out;
    return batch.map((p, b) => {
      const offset = width - p.row.length;
      let sum = 0;
      for (let j = p.first; j < p.row.length; j++) {
        // Position offset + j - 1 predicts token j.
        const base = (b * width + offset + j - 1) * vocab;
        sum += logSumExp(logits, base, vocab) - (logits[base + (p.row[j] as number)] as number);
      }
      return { sum, tokens: Math.max(0, p.row.length - p.first), bytes: p.bytes, chars: p.chars };
    });
  }
}

const key = (w: WindowRequest) => `${w.keep}\u0000${w.text}`;
