import type ort from 'onnxruntime-node';
import { contextLength, eosIds, ModelError, type ModelFolder, readModelFolder } from './folder.js';
import { emptyKv, type KvCache } from './kv.js';
import { logSoftmax, topK } from './sampling.js';
import { bool, float32, type GraphSession, inputDims, int64, openSession, type SessionOptions } from './session.js';
import { TextTokenizer } from './tokenizer.js';

export interface ForwardInput {
  /** [batch][seq] token ids; rows of equal length (pad on the left). */
  ids: number[][];
  /** [batch][past + seq]: 1 for real tokens, 0 for padding. */
  mask: number[][];
  /** [batch][seq] position of each new token. */
  positions: number[][];
  past: KvCache | null;
}

export interface ForwardOutput {
  /** [batch, seq, vocab] row-major. */
  logits: Float32Array;
  vocab: number;
  present: KvCache | null;
}

/**
 * A decoder-only language model in the Optimum ONNX layout: `input_ids`, `attention_mask`, optional `position_ids`,
 * `past_key_values.{i}.key|value` -> `logits`, `present.{i}.key|value` (or no cache at all). Optimum's merged decoder
 * (`use_cache_branch`) works too.
 */
export class CausalLM {
  readonly tokenizer: TextTokenizer;
  readonly contextLength: number;
  readonly eos: ReadonlySet<number>;
  readonly layers: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly hasCache: boolean;
  private readonly hasPositions: boolean;
  private readonly hasMask: boolean;
  private readonly hasCacheBranch: boolean;

  private constructor(
    readonly folder: ModelFolder,
    private readonly session: GraphSession,
  ) {
    const dir = folder.dir;
    const inputs = new Set(session.inputNames);
    const outputs = new Set(session.outputNames);
    if (!inputs.has('input_ids'))
      throw new ModelError(dir, `graph has no input 'input_ids' (inputs: ${[...inputs].join(', ')})`);
    if (!outputs.has('logits'))
      throw new ModelError(dir, `graph has no output 'logits' (outputs: ${[...outputs].join(', ')})`);
    this.hasMask = inputs.has('attention_mask');
    this.hasPositions = inputs.has('position_ids');
    this.hasCacheBranch = inputs.has('use_cache_branch');
    const pastInputs = [...inputs].filter((n) => n.startsWith('past_key_values.'));
    this.hasCache = pastInputs.length > 0;
    this.layers = pastInputs.length / 2;
    for (let i = 0; i < this.layers; i++) {
      for (const kind of ['key', 'value']) {
        if (!inputs.has(`past_key_values.${i}.${kind}`))
          throw new ModelError(dir, `graph lacks input 'past_key_values.${i}.${kind}'`);
        if (!outputs.has(`present.${i}.${kind}`))
          throw new ModelError(dir, `graph lacks output 'present.${i}.${kind}'`);
      }
    }
    const known = new Set(['input_ids', 'attention_mask', 'position_ids', 'use_cache_branch', ...pastInputs]);
    const unexpected = [...inputs].filter((n) => !known.has(n));
    if (unexpected.length) throw new ModelError(dir, `graph has unexpected inputs: ${unexpected.join(', ')}`);
    const c = folder.config;
    const dims = this.hasCache ? inputDims(session, 'past_key_values.0.key') : undefined;
    this.kvHeads = dims?.[1] ?? c.num_key_value_heads ?? c.num_attention_heads ?? 1;
    this.headDim = dims?.[3] ?? c.head_dim ?? Math.floor((c.hidden_size ?? 0) / (c.num_attention_heads ?? 1));
    if (this.hasCache && !(this.headDim > 0))
      throw new ModelError(dir, 'config.json: cannot tell head_dim of the KV cache');
    this.tokenizer = new TextTokenizer(folder);
    this.contextLength = contextLength(folder);
    this.eos = new Set(eosIds(folder));
  }

  static async load(dir: string, opts: SessionOptions & { onnxFile?: string } = {}): Promise<CausalLM> {
    const folder = readModelFolder(dir, opts.onnxFile);
    const session = await openSession(dir, folder.onnxPath, opts);
    const lm = new CausalLM(folder, session);
    // Warm-up: the first run allocates; doing it now keeps the first request's latency honest and proves the graph runs.
    await lm.forward({ ids: [[0]], mask: [[1]], positions: [[0]], past: lm.hasCache ? lm.emptyCache(1) : null });
    return lm;
  }

  emptyCache(batch: number): KvCache {
    return emptyKv(this.layers, batch, this.kvHeads, this.headDim);
  }

  async forward(input: ForwardInput): Promise<ForwardOutput> {
    const batch = input.ids.length;
    const seq = input.ids[0]?.length ?? 0;
    const feeds: Record<string, ort.Tensor> = { input_ids: int64(input.ids, [batch, seq]) };
    if (this.hasMask) feeds.attention_mask = int64(input.mask, [batch, input.mask[0]?.length ?? 0]);
    if (this.hasPositions) feeds.position_ids = int64(input.positions, [batch, seq]);
    const past = input.past;
    if (this.hasCache) {
      const kv = past ?? this.emptyCache(batch);
      const dims = [batch, this.kvHeads, kv.length, this.headDim];
      for (let i = 0; i < this.layers; i++) {
        feeds[`past_key_values.${i}.key`] = float32(kv.keys[i] as Float32Array, dims);
        feeds[`past_key_values.${i}.value`] = float32(kv.values[i] as Float32Array, dims);
      }
      if (this.hasCacheBranch) feeds.use_cache_branch = bool(kv.length > 0);
    }
    const out = await this.session.run(feeds);
    const logits = out.logits as ort.Tensor;
    const vocab = logits.dims[2] as number;
    let present: KvCache | null = null;
    if (this.hasCache) {
      const length = (past?.length ?? 0) + seq;
      present = {
        batch,
        length,
        heads: this.kvHeads,
        headDim: this.headDim,
        keys: Array.from(
          { length: this.layers },
          (_, i) => (out[`present.${i}.key`] as ort.Tensor).data as Float32Array,
        ),
        values: Array.from(
          { length: this.layers },
          (_, i) => (out[`present.${i}.value`] as ort.Tensor).data as Float32Array,
        ),
      };
    }
    return { logits: logits.data as Float32Array, vocab, present };
  }

  /** Throws a 400-worthy error when a prompt leaves no room to generate. */
  checkFits(promptTokens: number, extra = 1): void {
    if (promptTokens + extra > this.contextLength) {
      throw new ContextLengthError(this.contextLength, promptTokens);
    }
  }

  /** Full next-token distribution (log-probabilities) after a prefix. */
  async nextTokenLogprobs(prefix: number[]): Promise<Float32Array> {
    if (prefix.length === 0) throw new Error('nextTokenLogprobs needs at least one token');
    this.checkFits(prefix.length, 0);
    const out = await this.forward(single(prefix, this.hasCache ? this.emptyCache(1) : null));
    return logSoftmax(out.logits, (prefix.length - 1) * out.vocab, out.vocab);
  }

  /**
   * Log-probability of each continuation token given the prompt and the tokens before it, with the `top` most likely
   * alternatives at each position. Long inputs are fed in chunks through the cache so that no more than
   * `logitsBudget` logits exist at once (a large vocabulary times a long prompt would not fit otherwise).
   */
  async score(
    prompt: number[],
    continuation: number[],
    top = 0,
    logitsBudget = 16 * 1024 * 1024,
  ): Promise<{ tokens: number[]; logprobs: number[]; top: { id: number; logprob: number }[][] }> {
    const ids = [...prompt, ...continuation];
    this.checkFits(ids.length, 0);
    const vocab = this.folder.config.vocab_size ?? this.tokenizer.vocabSize;
    const chunk = this.hasCache ? Math.max(1, Math.floor(logitsBudget / vocab)) : ids.length;
    const logprobs: number[] = [];
    const alternatives: { id: number; logprob: number }[][] = [];
    let past = this.hasCache ? this.emptyCache(1) : null;
    // Position i predicts token i + 1; the last position predicts nothing asked for.
    for (let start = 0; start < ids.length - 1; start += chunk) {
      const end = Math.min(ids.length, start + chunk);
      const slice = ids.slice(start, end);
      const out = await this.forward({
        ids: [slice],
        mask: [ids.slice(0, end).map(() => 1)],
        positions: [slice.map((_, j) => start + j)],
        past,
      });
      past = out.present;
      for (let j = 0; j < slice.length && start + j + 1 < ids.length; j++) {
        const row = logSoftmax(out.logits, j * out.vocab, out.vocab);
        logprobs.push(row[ids[start + j + 1] as number] as number);
        alternatives.push(top > 0 ? topK(row, top).map((c) => ({ id: c.id, logprob: c.value })) : []);
      }
    }
    return { tokens: ids, logprobs, top: alternatives };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

function single(ids: number[], past: KvCache | null): ForwardInput {
  return { ids: [ids], mask: [ids.map(() => 1)], positions: [ids.map((_, i) => i)], past };
}

export class ContextLengthError extends Error {
  constructor(
    readonly limit: number,
    readonly tokens: number,
  ) {
    super(
      `This model's maximum context length is ${limit} tokens; the prompt has ${tokens} tokens and leaves no room to generate.`,
    );
  }
}
