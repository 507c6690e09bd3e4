import type { JsonObject } from '../plugins/types.js';
import { HttpError } from '../proxy/errors.js';
import { UpstreamError } from '../proxy/upstream/errors.js';
import type { CallOptions, Upstream } from '../proxy/upstream/types.js';
import type { CausalLM } from '../slm/causalLM.js';
import type { ChatMessageInput, TextTokenizer } from '../slm/tokenizer.js';
import type { TokenIndex } from './tokens.js';
import { Track } from './track.js';

export type LargeKind = 'local' | 'completions' | 'chat';

/**
 * Tokens outside a remote model's top-k: `exclude` combines on the top-k support only (EFT over an API as
 * proxy-tuning does it); `base` gives them the mass the top-k left over, shared in the small base model's
 * proportions, i.e. the large model is assumed to agree with the small base where it did not say.
 */
export type OutsideSupport = 'exclude' | 'base';

/** The large model's next-token log-probabilities: the whole vocabulary, or its top-k with -Infinity elsewhere. */
export interface LargeDist {
  logprobs: ArrayLike<number>;
  /** Probability mass the known support holds (1 with full logits). */
  covered: number;
}

/** The large model seen by the EFT decoder: next-token distributions along a generation, and blocks of them. */
export interface LargeModel {
  readonly kind: LargeKind;
  /** Whether one call scores a drafted block (local: one forward pass; completions: echo with logprobs). */
  readonly scoresBlocks: boolean;
  /** Upstream calls (local: forward passes) so far. */
  readonly calls: number;
  /** k when EFT combines on the large model's top-k support only; undefined with full logits or `outside: base`. */
  readonly supportK?: number;
  /** Set when only the top-k is known and the rest is filled in from the small base. */
  readonly outside?: OutsideSupport;
  next(generated: readonly number[]): Promise<LargeDist>;
  /** Distributions after generated + draft[0..i) for i = 0..draft.length (draft.length + 1 of them). */
  block(generated: readonly number[], draft: readonly number[]): Promise<LargeDist[]>;
  /** A model in process offers what it fed to its prefix cache once the answer is done. */
  keep?(): void;
}

/** Full logits from a model in process. */
export class LocalLarge implements LargeModel {
  readonly kind = 'local';
  readonly scoresBlocks = true;
  private readonly track: Track;

  constructor(lm: CausalLM, prompt: number[]) {
    this.track = new Track(lm, prompt);
  }
  get calls(): number {
    return this.track.passes;
  }
  async next(generated: readonly number[]): Promise<LargeDist> {
    return { logprobs: await this.track.next(generated), covered: 1 };
  }
  async block(generated: readonly number[], draft: readonly number[]): Promise<LargeDist[]> {
    const rows = await this.track.rowsFor([...generated, ...draft]);
    return rows.slice(generated.length).map((logprobs) => ({ logprobs, covered: 1 }));
  }
  keep(): void {
    this.track.keep();
  }
}

export class NoLogprobsError extends HttpError {
  constructor(upstream: string, what: string) {
    super(
      400,
      `EFT needs the large model's logprobs, but upstream '${upstream}' returned ${what}. ` +
        'Use an upstream that returns logprobs (OpenAI-compatible /v1/completions with `logprobs`, or chat with `top_logprobs`), or a local: model.',
      { code: 'upstream_without_logprobs' },
    );
  }
}

interface RemoteOptions {
  upstream: Upstream;
  /** The model name to send upstream. */
  model: string;
  /** Top-k per position (OpenAI allows up to 5 on completions and 20 on chat; vLLM up to 20 on both). */
  k: number;
  index: TokenIndex;
  vocab: number;
  call: CallOptions;
  /** Extra fields for every upstream request (e.g. vLLM's `return_tokens_as_token_ids`). */
  extra: JsonObject;
  /** What tokens outside the returned top-k get (see EftModels.outside). */
  outside: OutsideSupport;
}

function dense(vocab: number, entries: Iterable<[number | undefined, number]>): LargeDist {
  const logprobs = new Float32Array(vocab).fill(Number.NEGATIVE_INFINITY);
  let covered = 0;
  for (const [id, lp] of entries) {
    if (id === undefined || id >= vocab || !Number.isFinite(lp) || logprobs[id] !== Number.NEGATIVE_INFINITY) continue;
    logprobs[id] = lp;
    covered += Math.exp(lp);
  }
  return { logprobs, covered: Math.min(1, covered) };
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * An OpenAI-compatible `/v1/completions` upstream asked for `logprobs: k` with the prompt as token ids. Blocks are
 * scored with `echo: true` (the prompt's own logprobs); a server that cannot echo them is scored token by token.
 */
export class CompletionsLarge implements LargeModel {
  readonly kind = 'completions';
  scoresBlocks = true;
  calls = 0;
  get supportK(): number | undefined {
    return this.o.outside === 'exclude' ? this.o.k : undefined;
  }
  get outside(): OutsideSupport {
    return this.o.outside;
  }

  constructor(
    private readonly o: RemoteOptions,
    private readonly prompt: number[],
  ) {}

  private async request(
    ids: number[],
    echo: boolean,
    ignoreEos = false,
  ): Promise<{ top: unknown[]; stopped: boolean }> {
    this.calls++;
    const body: JsonObject = {
      ...this.o.extra,
      model: this.o.model,
      prompt: ids,
      max_tokens: 1,
      temperature: 0,
      logprobs: this.o.k,
      echo,
      ...(ignoreEos ? { ignore_eos: true } : {}),
    };
    const res = await this.o.upstream.completion(body, this.o.call);
    const choice = Array.isArray(res.choices) ? res.choices[0] : undefined;
    const lp = isObject(choice) ? choice.logprobs : undefined;
    if (!isObject(lp) || !Array.isArray(lp.top_logprobs))
      throw new NoLogprobsError(this.o.upstream.name, 'no logprobs');
    return { top: lp.top_logprobs, stopped: isObject(choice) && choice.finish_reason === 'stop' };
  }

  private entryAt(r: { top: unknown[] }, i: number): LargeDist | undefined {
    const top = r.top[i];
    if (!isObject(top)) return undefined;
    // The support is the top-k only, never the echoed token as well: a drafted token outside the top-k would otherwise
    // join the support in speculative mode but not token by token, and the two would sample differently.
    return dense(
      this.o.vocab,
      Object.entries(top).map(([t, lp]): [number | undefined, number] => [this.o.index.id(t), Number(lp)]),
    );
  }

  async next(generated: readonly number[]): Promise<LargeDist> {
    const ids = [...this.prompt, ...generated];
    const r = await this.request(ids, false);
    let d = this.entryAt(r, 0);
    // A server stopping at its end-of-sequence token returns no token and so no logprobs for it (as OpenAI does):
    // ask again past it (`ignore_eos`, understood by vLLM and Tandem).
    if (!d && r.stopped) d = this.entryAt(await this.request(ids, false, true), 0);
    if (!d) throw new NoLogprobsError(this.o.upstream.name, 'no top_logprobs for the next token');
    return d;
  }

  async block(generated: readonly number[], draft: readonly number[]): Promise<LargeDist[]> {
    if (!this.scoresBlocks) return [await this.next(generated)];
    const ids = [...this.prompt, ...generated, ...draft];
    let r: Awaited<ReturnType<CompletionsLarge['request']>>;
    try {
      r = await this.request(ids, true);
    } catch (err) {
      // A server that refuses echo with logprobs (OpenAI's newer models do) is scored one token at a time.
      if (err instanceof UpstreamError && err.status >= 400 && err.status < 500 && err.status !== 429) {
        this.scoresBlocks = false;
        return [await this.next(generated)];
      }
      throw err;
    }
    const from = this.prompt.length + generated.length;
    const out: LargeDist[] = [];
    for (let i = 0; i <= draft.length; i++) {
      const d = this.entryAt(r, from + i);
      if (!d) break;
      out.push(d);
    }
    // The row after the block is missing when the server stopped there at its end of sequence: the drafts still stand.
    if (out.length >= draft.length) return out;
    // Echo came back without the prompt's logprobs: fall back for good, and use what there is.
    this.scoresBlocks = false;
    return out.length ? out.slice(0, 1) : [await this.next(generated)];
  }
}

/**
 * A chat upstream asked for `top_logprobs: k` (k <= 20). Chat cannot score a given continuation, so each call lets
 * the large model run ahead greedily for `lookahead` tokens: its distributions stay valid as long as the EFT output
 * follows the large model's own tokens, and the next call starts where they part. Continuing a partial answer uses
 * vLLM's `continue_final_message` (the local provider understands it too).
 */
export class ChatLarge implements LargeModel {
  readonly kind = 'chat';
  readonly scoresBlocks = false;
  calls = 0;
  get supportK(): number | undefined {
    return this.o.outside === 'exclude' ? this.o.k : undefined;
  }
  get outside(): OutsideSupport {
    return this.o.outside;
  }
  private path: { start: number[]; tokens: (number | undefined)[]; dists: LargeDist[] } | undefined;

  constructor(
    private readonly o: RemoteOptions & { tokenizer: TextTokenizer; lookahead: number },
    private readonly messages: ChatMessageInput[],
  ) {}

  private cached(generated: readonly number[]): LargeDist | undefined {
    const p = this.path;
    if (!p || generated.length < p.start.length) return undefined;
    for (let i = 0; i < p.start.length; i++) if (p.start[i] !== generated[i]) return undefined;
    const j = generated.length - p.start.length;
    if (j >= p.dists.length) return undefined;
    for (let i = 0; i < j; i++) if (p.tokens[i] !== generated[p.start.length + i]) return undefined;
    return p.dists[j];
  }

  async next(generated: readonly number[]): Promise<LargeDist> {
    const hit = this.cached(generated);
    if (hit) return hit;
    this.calls++;
    const partial = generated.length > 0;
    const body: JsonObject = {
      ...this.o.extra,
      model: this.o.model,
      messages: partial
        ? [...this.messages, { role: 'assistant', content: this.o.tokenizer.decode([...generated], false) }]
        : this.messages,
      max_tokens: this.o.lookahead,
      temperature: 0,
      logprobs: true,
      top_logprobs: this.o.k,
      ...(partial ? { continue_final_message: true, add_generation_prompt: false } : {}),
    };
    const res = await this.o.upstream.chat(body, this.o.call);
    const choice = Array.isArray(res.choices) ? res.choices[0] : undefined;
    const lp = isObject(choice) ? choice.logprobs : undefined;
    const content = isObject(lp) && Array.isArray(lp.content) ? lp.content.filter(isObject) : [];
    if (content.length === 0) throw new NoLogprobsError(this.o.upstream.name, 'no logprobs.content');
    const ids = (e: JsonObject) => this.o.index.id(String(e.token), Array.isArray(e.bytes) ? e.bytes : null);
    const dists = content.map((e) => {
      const top = Array.isArray(e.top_logprobs) ? e.top_logprobs.filter(isObject) : [];
      return dense(this.o.vocab, [
        ...top.map((t): [number | undefined, number] => [ids(t), Number(t.logprob)]),
        [ids(e), Number(e.logprob)],
      ]);
    });
    this.path = { start: [...generated], tokens: content.map(ids), dists };
    return dists[0] as LargeDist;
  }

  async block(generated: readonly number[]): Promise<LargeDist[]> {
    return [await this.next(generated)];
  }
}
