import { randomUUID } from 'node:crypto';
import { contentText } from '../../plugins/text.js';
import type { JsonObject } from '../../plugins/types.js';
import { type CausalLM, ContextLengthError } from '../../slm/causalLM.js';
import {
  AbortedError,
  type GeneratedToken,
  type GenerateOptions,
  type GenerateResult,
  type PromptTokenScore,
  QueueFullError,
} from '../../slm/engine.js';
import type { LoadedCausal, ModelRegistry } from '../../slm/registry.js';
import { HttpError } from '../errors.js';
import { chatLogprobs, completionLogprobs, entryOf } from '../logprobs.js';
import { refuseCompletionOptions, refuseUnhonoured } from '../textOnly.js';
import { Channel } from './channel.js';
import { ClientGoneError } from './errors.js';
import type { CallOptions, Upstream } from './types.js';

type Choice = { index: number; text: string; result: GenerateResult };

const now = () => Math.floor(Date.now() / 1000);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/** OpenAI's logit_bias object (token id as string -> bias), as the engine takes it. */
function logitBias(v: unknown): Map<number, number> | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const out = new Map<number, number>();
  for (const [k, b] of Object.entries(v))
    if (/^\d+$/.test(k) && typeof b === 'number') out.set(Number(k), Math.max(-100, Math.min(100, b)));
  return out.size ? out : undefined;
}

function stops(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string' && s.length > 0) : [];
}

/** The engine's refusals as HTTP errors: a prompt past the context is the request's, a full queue is a 429. */
function fromEngine(err: unknown, param: string): unknown {
  if (err instanceof ContextLengthError)
    return new HttpError(400, err.message, { param, code: 'context_length_exceeded' });
  if (err instanceof QueueFullError)
    return new HttpError(429, err.message, { code: 'model_busy', headers: { 'retry-after': '1' } });
  if (err instanceof AbortedError) return new ClientGoneError();
  return err;
}

const nothingToReturn = () =>
  new HttpError(400, 'max_tokens is 0: there is nothing to return without echo.', { param: 'max_tokens' });

/** Once generation ends: a finishing chunk per choice, the usage chunk if asked for, then the end (or the error). */
function closeStream(
  out: Channel<JsonObject>,
  done: Promise<Choice[]>,
  base: JsonObject,
  promptTokens: number,
  includeUsage: boolean,
  finishChoice: (c: Choice) => JsonObject,
): void {
  done.then(
    (choices) => {
      for (const c of choices) out.push({ ...base, choices: [finishChoice(c)] });
      if (includeUsage) {
        const completion = choices.reduce((a, c) => a + c.result.tokens.length, 0);
        const usage = {
          prompt_tokens: promptTokens,
          completion_tokens: completion,
          total_tokens: promptTokens + completion,
        };
        out.push({ ...base, choices: [], usage });
      }
      out.end();
    },
    (err: Error) => out.fail(err),
  );
}

/**
 * A causal LM from the registry served behind the OpenAI API, in process: chat (with the model's chat template),
 * completions, streaming, logprobs, echo and usage, as an OpenAI-compatible server would.
 */
export class LocalUpstream implements Upstream {
  readonly name: string;

  constructor(
    name: string,
    private readonly registry: ModelRegistry,
    /** Registry name or folder path. */
    readonly model: string,
  ) {
    this.name = name;
  }

  /** Loads and warms the model now rather than on the first request. */
  async warm(): Promise<void> {
    await this.registry.causalLM(this.model);
  }

  async causalLM(): Promise<CausalLM> {
    return (await this.load()).lm;
  }

  private async load(): Promise<LoadedCausal> {
    try {
      return await this.registry.causalLM(this.model);
    } catch (err) {
      throw new HttpError(503, `Local model '${this.model}' is unavailable: ${(err as Error).message}`, {
        type: 'api_error',
        code: 'model_unavailable',
      });
    }
  }

  /**
   * Generation options from the request, then the model's generation_config.json. `maxKey` is the request's own
   * max_tokens (undefined when it gave none) and `fallback` the length used then, cut to the room the context leaves.
   */
  private options(
    m: LoadedCausal,
    body: JsonObject,
    promptLen: number,
    maxKey: unknown,
    fallback = m.lm.folder.generation.max_new_tokens ?? 256,
  ): GenerateOptions {
    const gen = m.lm.folder.generation;
    const defTemp = gen.do_sample === false ? 0 : (gen.temperature ?? 1);
    const room = m.lm.contextLength - promptLen;
    const asked = num(maxKey);
    // An explicit length that cannot fit is refused, as OpenAI and vLLM do, rather than silently cut short; a prompt
    // that leaves no room at all is the prompt's error, reported by precheck.
    if (asked !== undefined && room >= 1 && asked > room) {
      const param = body.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens';
      throw new HttpError(
        400,
        `This model's maximum context length is ${m.lm.contextLength} tokens; the prompt has ${promptLen} tokens and ${param} asks for ${asked} more.`,
        { param, code: 'context_length_exceeded' },
      );
    }
    return {
      maxTokens: Math.max(0, Math.min(asked ?? fallback, room)),
      temperature: num(body.temperature) ?? defTemp,
      topP: num(body.top_p) ?? gen.top_p ?? 1,
      // Like vLLM's --generation-config auto: a default the model's own file sets, nothing it leaves out.
      topK: num(body.top_k) ?? gen.top_k ?? 0,
      minP: num(body.min_p) ?? gen.min_p ?? 0,
      seed: num(body.seed),
      stop: stops(body.stop),
      ignoreEos: body.ignore_eos === true,
      presencePenalty: num(body.presence_penalty) ?? 0,
      frequencyPenalty: num(body.frequency_penalty) ?? 0,
      // vLLM's extension; the model's own default comes from generation_config.json.
      repetitionPenalty: num(body.repetition_penalty) ?? gen.repetition_penalty ?? 1,
      logitBias: logitBias(body.logit_bias),
    };
  }

  private encodeChat(m: LoadedCausal, body: JsonObject): number[] {
    const messages = (body.messages as JsonObject[]).map((x) => ({
      role: String(x.role),
      content: contentText(x.content),
    }));
    const tok = m.lm.tokenizer;
    // vLLM's `continue_final_message`: the answer goes on from a final assistant message (assistant prefill).
    const last = messages[messages.length - 1];
    if (body.continue_final_message === true && last?.role === 'assistant') {
      return tok.encode(tok.applyChatTemplate(messages.slice(0, -1), true) + last.content);
    }
    return tok.encode(tok.applyChatTemplate(messages, true));
  }

  private encodePrompts(m: LoadedCausal, prompt: unknown): number[][] {
    const tok = m.lm.tokenizer;
    let out: number[][] = [];
    if (typeof prompt === 'string') out = [tok.encode(prompt)];
    else if (Array.isArray(prompt) && prompt.every((p) => typeof p === 'number')) out = [prompt as number[]];
    else if (Array.isArray(prompt)) out = prompt.map((p) => (typeof p === 'string' ? tok.encode(p) : (p as number[])));
    // Token-id prompts come from the client: an id outside the vocabulary is its error, not a model crash.
    const bad = out.flat().find((id) => id >= tok.vocabSize);
    if (bad !== undefined) {
      throw new HttpError(400, `Token id ${bad} is outside this model's vocabulary (size ${tok.vocabSize}).`, {
        param: 'prompt',
        code: 'invalid_token_id',
      });
    }
    return out;
  }

  /** Refuses before streaming starts what would fail at once, so the client gets a plain HTTP error. */
  private precheck(m: LoadedCausal, promptLen: number, param: string): void {
    if (promptLen === 0)
      throw new HttpError(400, 'The prompt is empty after tokenization.', { param, code: 'empty_prompt' });
    try {
      m.lm.checkFits(promptLen);
      m.engine.checkRoom();
    } catch (err) {
      throw fromEngine(err, param);
    }
  }

  /**
   * Every choice is a sequence in the engine's queue: a request asking for more than the queue ever holds would be
   * refused as busy (429) however long the client waited and retried, so it is the request's error (400).
   */
  private checkChoices(m: LoadedCausal, choices: number, param: string): void {
    if (choices > m.engine.queueLimit)
      throw new HttpError(
        400,
        `This request asks for ${choices} choices; this model queues at most ${m.engine.queueLimit} sequences at once (its queueLimit). Ask for fewer.`,
        { param, code: 'too_many_choices' },
      );
  }

  /** Runs n generations (batched by the engine), mapping runtime errors to HTTP ones. */
  private async run(
    m: LoadedCausal,
    prompt: number[],
    n: number,
    opts: GenerateOptions,
    param: string,
    signal: AbortSignal,
    onText?: (i: number, d: string, t?: GeneratedToken) => void,
  ): Promise<Choice[]> {
    if (prompt.length === 0)
      throw new HttpError(400, 'The prompt is empty after tokenization.', { param, code: 'empty_prompt' });
    // The choices stand or fall together: once one fails, the others are cancelled rather than decoded for nobody.
    const failed = new AbortController();
    const all = AbortSignal.any([signal, failed.signal]);
    try {
      return await Promise.all(
        Array.from({ length: n }, async (_, index) => {
          const result = await m.engine.generate(prompt, {
            ...opts,
            seed: opts.seed === undefined ? undefined : opts.seed + index,
            signal: all,
            onText: onText ? (d, t) => onText(index, d, t) : undefined,
          });
          return { index, text: result.text, result };
        }),
      );
    } catch (err) {
      failed.abort();
      throw fromEngine(err, param);
    }
  }

  private chatSetup(m: LoadedCausal, body: JsonObject) {
    refuseUnhonoured(body, 'This model is served locally and');
    const prompt = this.encodeChat(m, body);
    const opts = this.options(m, body, prompt.length, body.max_completion_tokens ?? body.max_tokens);
    const wantLogprobs = body.logprobs === true;
    opts.topLogprobs = wantLogprobs ? (num(body.top_logprobs) ?? 0) : undefined;
    const n = num(body.n) ?? 1;
    this.checkChoices(m, n, 'n');
    return { prompt, opts, wantLogprobs, n };
  }

  async chat(body: JsonObject, call: CallOptions): Promise<JsonObject> {
    const m = await this.load();
    const { prompt, opts, wantLogprobs, n } = this.chatSetup(m, body);
    const choices = await this.run(m, prompt, n, opts, 'messages', call.signal);
    const completion = choices.reduce((a, c) => a + c.result.tokens.length, 0);
    return {
      id: `chatcmpl-${randomUUID()}`,
      object: 'chat.completion',
      created: now(),
      model: String(body.model),
      system_fingerprint: `tandem-local-${this.name}`,
      choices: choices.map((c) => ({
        index: c.index,
        message: { role: 'assistant', content: c.text },
        logprobs: wantLogprobs ? chatLogprobs(c.result.tokens) : null,
        finish_reason: c.result.finishReason,
      })),
      usage: { prompt_tokens: prompt.length, completion_tokens: completion, total_tokens: prompt.length + completion },
    };
  }

  async chatStream(body: JsonObject, call: CallOptions): Promise<AsyncIterable<JsonObject>> {
    const m = await this.load();
    const { prompt, opts, wantLogprobs, n } = this.chatSetup(m, body);
    this.precheck(m, prompt.length, 'messages');
    const base = {
      id: `chatcmpl-${randomUUID()}`,
      object: 'chat.completion.chunk',
      created: now(),
      model: String(body.model),
      system_fingerprint: `tandem-local-${this.name}`,
    };
    const out = new Channel<JsonObject>();
    for (let i = 0; i < n; i++)
      out.push({
        ...base,
        choices: [{ index: i, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
      });
    const includeUsage = (body.stream_options as JsonObject | undefined)?.include_usage === true;
    const done = this.run(m, prompt, n, opts, 'messages', call.signal, (index, delta, token) => {
      if (!delta && !token) return;
      out.push({
        ...base,
        choices: [
          {
            index,
            delta: { content: delta },
            logprobs: wantLogprobs && token ? chatLogprobs([token]) : null,
            finish_reason: null,
          },
        ],
      });
    });
    closeStream(out, done, base, prompt.length, includeUsage, (c) => ({
      index: c.index,
      delta: {},
      logprobs: null,
      finish_reason: c.result.finishReason,
    }));
    return out;
  }

  async completion(body: JsonObject, call: CallOptions): Promise<JsonObject> {
    refuseCompletionOptions(body, 'local models');
    const m = await this.load();
    const prompts = this.encodePrompts(m, body.prompt);
    const n = num(body.n) ?? 1;
    this.checkChoices(m, prompts.length * n, prompts.length > 1 ? 'prompt' : 'n');
    const k = num(body.logprobs);
    const echo = body.echo === true;
    const all = await Promise.all(prompts.map((p) => this.completeOne(m, body, p, n, k, echo, call.signal)));
    const choices = all.flat().map((c, index) => ({ ...c, index }));
    const promptTokens = prompts.reduce((a, p) => a + p.length, 0);
    const completion = choices.reduce((a, c) => a + c.completionTokens, 0);
    return {
      id: `cmpl-${randomUUID()}`,
      object: 'text_completion',
      created: now(),
      model: String(body.model),
      system_fingerprint: `tandem-local-${this.name}`,
      choices: choices.map(({ completionTokens: _, ...c }) => c),
      usage: { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion },
    };
  }

  private async completeOne(
    m: LoadedCausal,
    body: JsonObject,
    prompt: number[],
    n: number,
    k: number | undefined,
    echo: boolean,
    signal: AbortSignal,
  ) {
    const tok = m.lm.tokenizer;
    // OpenAI's completions default to 16 tokens.
    const asked = num(body.max_tokens) ?? 16;
    // Scoring a prompt (echo, max_tokens 0) needs it to fit; generating needs room for one more token.
    this.precheck(m, asked === 0 ? Math.max(1, prompt.length - 1) : prompt.length, 'prompt');
    const opts = this.options(m, body, prompt.length, body.max_tokens, 16);
    opts.topLogprobs = k;
    // Echo with logprobs scores the prompt in the prefill pass that runs anyway (one pass, as vLLM does).
    if (echo && k !== undefined) opts.promptLogprobs = k;
    if (opts.maxTokens === 0 && !echo) throw nothingToReturn();
    const generated = await this.run(m, prompt, n, opts, 'prompt', signal);
    // Nothing generated (max_tokens 0): the prompt is scored on its own.
    const scores =
      echo && k !== undefined
        ? (generated[0]?.result.promptScores ?? (await this.scorePrompt(m, prompt, k)))
        : undefined;
    const echoed = scores ? this.echoEntries(m, prompt, scores) : undefined;
    return generated.map((c) => {
      const promptText = echo ? tok.decode(prompt) : '';
      const logprobs =
        k === undefined ? null : completionLogprobs([...(echoed ?? []), ...c.result.tokens.map(entryOf)]);
      return {
        index: c.index,
        text: promptText + c.text,
        logprobs,
        finish_reason: c.result.finishReason,
        completionTokens: c.result.tokens.length,
      };
    });
  }

  /** The prompt scored in a pass of its own, in the engine's shape (used when nothing was generated). */
  private async scorePrompt(m: LoadedCausal, prompt: number[], k: number): Promise<PromptTokenScore[]> {
    const scored = await m.lm.score(prompt.slice(0, 1), prompt.slice(1), k);
    return scored.logprobs.map((logprob, i) => ({ logprob, top: scored.top[i] ?? [] }));
  }

  /** The prompt's tokens as logprobs entries; the first token has no logprob. */
  private echoEntries(m: LoadedCausal, prompt: number[], rows: PromptTokenScore[]) {
    const tok = m.lm.tokenizer;
    return [
      {
        token: tok.tokenText(prompt[0] as number),
        logprob: null as number | null,
        top: [] as { text: string; logprob: number }[],
      },
      ...prompt.slice(1).map((id, i) => ({
        token: tok.tokenText(id),
        logprob: rows[i]?.logprob ?? null,
        top: (rows[i]?.top ?? []).map((x) => ({ text: tok.tokenText(x.id), logprob: x.logprob })),
      })),
    ];
  }

  async completionStream(body: JsonObject, call: CallOptions): Promise<AsyncIterable<JsonObject>> {
    refuseCompletionOptions(body, 'local models');
    const m = await this.load();
    const prompts = this.encodePrompts(m, body.prompt);
    if (prompts.length !== 1) throw new HttpError(400, 'Streaming completions take one prompt.', { param: 'prompt' });
    const prompt = prompts[0] as number[];
    const opts = this.options(m, body, prompt.length, body.max_tokens, 16);
    const base = { id: `cmpl-${randomUUID()}`, object: 'text_completion', created: now(), model: String(body.model) };
    const out = new Channel<JsonObject>();
    const n = num(body.n) ?? 1;
    this.checkChoices(m, n, 'n');
    this.precheck(m, prompt.length, 'prompt');
    if (opts.maxTokens === 0 && body.echo !== true) throw nothingToReturn();
    const k = num(body.logprobs);
    opts.topLogprobs = k;
    // Token text_offsets continue across chunks (and after an echoed prompt), as in the non-streamed answer.
    let start = 0;
    if (body.echo === true) {
      // The prompt's scores are needed before the first generated token, so they take a pass of their own.
      const echoed = k === undefined ? [] : this.echoEntries(m, prompt, await this.scorePrompt(m, prompt, k));
      start = echoed.reduce((a, e) => a + e.token.length, 0);
      const text = m.lm.tokenizer.decode(prompt);
      const logprobs = k === undefined ? null : completionLogprobs(echoed);
      for (let i = 0; i < n; i++) out.push({ ...base, choices: [{ index: i, text, logprobs, finish_reason: null }] });
    }
    const offsets = Array.from({ length: n }, () => start);
    const includeUsage = (body.stream_options as JsonObject | undefined)?.include_usage === true;
    const done = this.run(m, prompt, n, opts, 'prompt', call.signal, (index, delta, token) => {
      if (!delta && !(k !== undefined && token)) return;
      let logprobs: JsonObject | null = null;
      if (k !== undefined && token) {
        logprobs = completionLogprobs([entryOf(token)], offsets[index]);
        offsets[index] = (offsets[index] as number) + token.text.length;
      }
      out.push({ ...base, choices: [{ index, text: delta, logprobs, finish_reason: null }] });
    });
    closeStream(out, done, base, prompt.length, includeUsage, (c) => ({
      index: c.index,
      text: '',
      logprobs: null,
      finish_reason: c.result.finishReason,
    }));
    return out;
  }

  async listModels(): Promise<JsonObject[]> {
    return [{ id: this.model, object: 'model', created: 0, owned_by: 'tandem-local' }];
  }
}
