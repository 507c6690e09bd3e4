import { randomInt, randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { EftDecoder, type EftParams, type EftResult, type ScoredToken } from '../../eft/decoder.js';
import { ChatLarge, CompletionsLarge, type LargeModel, LocalLarge } from '../../eft/large.js';
import { rawChatText } from '../../eft/prompt.js';
import { TokenIndex, tokenizerFingerprint } from '../../eft/tokens.js';
import { Track } from '../../eft/track.js';
import { HttpError } from '../../proxy/errors.js';
import { chatLogprobs, completionLogprobs, entryOf } from '../../proxy/logprobs.js';
import { refuseCompletionOptions, refuseUnhonoured } from '../../proxy/textOnly.js';
import { Channel } from '../../proxy/upstream/channel.js';
import type { CallOptions, Upstream } from '../../proxy/upstream/types.js';
import type { CausalLM } from '../../slm/causalLM.js';
import type { GeneratedToken } from '../../slm/engine.js';
import type { ModelRegistry } from '../../slm/registry.js';
import type { ChatMessageInput, TextTokenizer } from '../../slm/tokenizer.js';
import { contentText } from '../text.js';
import type { DecodeArgs, DecodeResult, JsonObject, PluginDefinition, PluginEnv } from '../types.js';
import { type EftConfig, EftConfigSchema, EftRequestOptionsSchema } from './schema.js';

const now = () => Math.floor(Date.now() / 1000);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

async function loadSmall(models: ModelRegistry, name: string, role: string): Promise<CausalLM> {
  try {
    return (await models.causalLM(name)).lm;
  } catch (err) {
    throw new Error(`eft: ${role} model '${name}' cannot be loaded: ${(err as Error).message}`);
  }
}

function readTokenizer(models: ModelRegistry, nameOrPath: string, baseDir: string): object {
  let dir: string;
  try {
    dir = models.spec(nameOrPath).path;
  } catch {
    dir = isAbsolute(nameOrPath) ? nameOrPath : resolve(baseDir, nameOrPath);
  }
  const file = join(dir, 'tokenizer.json');
  if (!existsSync(file)) throw new Error(`eft: large.tokenizer '${nameOrPath}': no tokenizer.json in ${dir}`);
  return JSON.parse(readFileSync(file, 'utf8')) as object;
}

interface Setup {
  large: CausalLM | undefined;
  kind: 'local' | 'completions' | 'chat';
  experts: { lm: CausalLM; weight: number }[];
  base: CausalLM;
  index: TokenIndex;
  vocab: number;
  contextLength: number;
}

async function setup(cfg: EftConfig, env: PluginEnv): Promise<Setup> {
  const { models, route } = env;
  if (!models || !route) throw new Error('eft: runs only on a route of a Tandem server');
  const experts = await Promise.all(
    cfg.experts.map(async (e) => ({ lm: await loadSmall(models, e.model, 'expert'), weight: e.weight })),
  );
  const base = await loadSmall(models, cfg.base, 'base');
  const kind = cfg.large.kind === 'auto' ? (route.upstream.causalLM ? 'local' : 'completions') : cfg.large.kind;
  if (kind === 'local' && !route.upstream.causalLM)
    throw new Error(
      `eft: large.kind 'local' needs a local: upstream; route '${route.model}' has '${route.upstream.name}'`,
    );
  const large = kind === 'local' ? await (route.upstream.causalLM as () => Promise<CausalLM>)() : undefined;
  let largeTokenizer: object;
  let largeName: string;
  if (large) {
    largeTokenizer = large.folder.tokenizerJson;
    largeName = `upstream '${route.upstream.name}'`;
  } else {
    if (!cfg.large.tokenizer)
      throw new Error(
        `eft: route '${route.model}' has a remote large model, so large.tokenizer must name the model folder (or a folder with its tokenizer.json) it tokenizes with; EFT combines token distributions, which needs one shared tokenizer`,
      );
    largeTokenizer = readTokenizer(models, cfg.large.tokenizer, env.baseDir);
    largeName = `large.tokenizer '${cfg.large.tokenizer}'`;
  }
  const want = tokenizerFingerprint(largeTokenizer);
  const smalls: [string, CausalLM][] = [
    ...cfg.experts.map((e, i): [string, CausalLM] => [`expert '${e.model}'`, (experts[i] as { lm: CausalLM }).lm]),
    [`base '${cfg.base}'`, base],
  ];
  for (const [name, lm] of smalls) {
    const got = tokenizerFingerprint(lm.folder.tokenizerJson);
    if (got !== want)
      throw new Error(
        `eft: tokenizer mismatch on route '${route.model}': ${name} (tokenizer ${got}) differs from ${largeName} (tokenizer ${want}); EFT adds per-token log-probabilities, so all models must share one tokenizer`,
      );
  }
  const vocab = base.tokenizer.vocabSize;
  const sizes = [base, ...experts.map((e) => e.lm), ...(large ? [large] : [])].map(
    (lm) => lm.folder.config.vocab_size ?? lm.tokenizer.vocabSize,
  );
  if (new Set(sizes).size !== 1)
    throw new Error(`eft: models on route '${route.model}' differ in vocab_size (${sizes.join(', ')})`);
  const contextLength = Math.min(
    ...[base, ...experts.map((e) => e.lm), ...(large ? [large] : [])].map((lm) => lm.contextLength),
  );
  return { large, kind, experts, base, index: new TokenIndex(base.tokenizer), vocab: sizes[0] ?? vocab, contextLength };
}

function requestOptions(options: JsonObject): { beta?: number; gamma?: number } {
  const raw = options.eft;
  if (raw === undefined) return {};
  const res = EftRequestOptionsSchema.safeParse(raw);
  if (res.success) return res.data;
  const issue = res.error.issues[0];
  const path = ['tandem', 'eft', ...(issue?.path ?? []).map(String)].join('.');
  throw new HttpError(400, `Invalid ${path}: ${issue?.message ?? 'invalid'}`, {
    param: path,
    code: 'invalid_eft_option',
  });
}

/** Each choice is a decode of its own (the models' work grows with n), so a request gets a handful at most. */
const MAX_CHOICES = 16;

function unsupported(body: JsonObject, chat: boolean): void {
  if ((num(body.n) ?? 1) > MAX_CHOICES)
    throw new HttpError(400, `EFT routes generate at most ${MAX_CHOICES} choices per request (n).`, {
      param: 'n',
      code: 'too_many_choices',
    });
  if (!chat && body.echo === true && num(body.logprobs) !== undefined)
    throw new HttpError(
      400,
      'EFT routes score the tokens they generate, not the prompt: echo with logprobs is not supported.',
      {
        param: 'logprobs',
      },
    );
  refuseUnhonoured(body, 'An EFT route');
  if (!chat) refuseCompletionOptions(body, 'EFT routes');
  // Sampling modifiers EFT does not apply would change the answer's meaning if dropped silently (a ban by logit_bias
  // is a hard constraint); their neutral values, which clients often send anyway, pass.
  const modifiers: [string, boolean][] = [
    ['presence_penalty', (num(body.presence_penalty) ?? 0) !== 0],
    ['frequency_penalty', (num(body.frequency_penalty) ?? 0) !== 0],
    ['repetition_penalty', (num(body.repetition_penalty) ?? 1) !== 1],
    ['logit_bias', Object.keys((body.logit_bias as JsonObject | null | undefined) ?? {}).length > 0],
  ];
  for (const [param, set] of modifiers)
    if (set)
      throw new HttpError(400, `EFT routes do not apply ${param}; leave it out (or at its neutral value).`, {
        param,
        code: 'unsupported_parameter',
      });
}

/**
 * The response's `tandem.eft`: one choice's stats as they are; with several, the counts summed over the choices and
 * the covered mass averaged (its minimum the least of them).
 */
function eftReport(rs: readonly EftResult[]): JsonObject {
  const stats = rs.map((r) => ({ ...r.stats, generated_tokens: r.ids.length }));
  if (stats.length === 1) return stats[0] as JsonObject;
  const total = (k: 'upstream_calls' | 'drafted_tokens' | 'accepted_tokens' | 'generated_tokens') =>
    stats.reduce((a, x) => a + x[k], 0);
  return {
    ...stats[0],
    upstream_calls: total('upstream_calls'),
    drafted_tokens: total('drafted_tokens'),
    accepted_tokens: total('accepted_tokens'),
    generated_tokens: total('generated_tokens'),
    covered_mass_mean: stats.reduce((a, x) => a + x.covered_mass_mean, 0) / stats.length,
    covered_mass_min: Math.min(...stats.map((x) => x.covered_mass_min)),
    choices: stats.length,
  };
}

/** The alternatives asked for per token (chat: logprobs + top_logprobs; completions: logprobs k), or undefined. */
function logprobsAsked(body: JsonObject, chat: boolean): number | undefined {
  if (chat) return body.logprobs === true ? (num(body.top_logprobs) ?? 0) : undefined;
  return num(body.logprobs);
}

/** A scored EFT token in the shape the OpenAI logprobs formatters take (text and bytes for it and its alternatives). */
function generatedToken(tok: TextTokenizer, t: ScoredToken): GeneratedToken {
  return {
    id: t.id,
    text: tok.tokenText(t.id),
    bytes: tok.tokenBytes(t.id),
    logprob: t.logprob,
    top: t.top.map((c) => ({ id: c.id, text: tok.tokenText(c.id), bytes: tok.tokenBytes(c.id), logprob: c.logprob })),
  };
}

function stopList(v: unknown): string[] {
  if (typeof v === 'string') return v ? [v] : [];
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === 'string' && s.length > 0) : [];
}

/** Emulated fine-tuning / proxy-tuning as a route's decoder. */
export const eftPlugin: PluginDefinition<EftConfig> = {
  id: 'eft',
  description: 'Emulated fine-tuning: the large model steered by a small fine-tuned model minus its base',
  configSchema: EftConfigSchema,
  defaultFailMode: 'closed',
  async create(cfg, env) {
    const s = await setup(cfg, env);
    const route = env.route as NonNullable<PluginEnv['route']>;

    const decodeOnce = (args: DecodeArgs) => {
      const { ctx, body, upstream, signal } = args;
      const chat = ctx.endpoint === 'chat';
      unsupported(body, chat);
      const opts = requestOptions(ctx.options);
      const tok = s.base.tokenizer;
      let messages: ChatMessageInput[];
      let raw: number[];
      if (chat) {
        messages = (body.messages as JsonObject[]).map((m) => ({
          role: String(m.role),
          content: contentText(m.content),
        }));
        raw = tok.encode(rawChatText(messages));
      } else {
        const prompt = body.prompt;
        if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((x) => typeof x === 'number')) raw = prompt;
        else if (typeof prompt === 'string') raw = tok.encode(prompt);
        else if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string')
          raw = tok.encode(prompt[0]);
        else throw new HttpError(400, 'EFT routes take one prompt.', { param: 'prompt' });
        if (raw.some((id) => id >= s.vocab || id < 0))
          throw new HttpError(400, `A token id is outside the vocabulary (size ${s.vocab}).`, {
            param: 'prompt',
            code: 'invalid_token_id',
          });
        messages = [{ role: 'user', content: tok.decode(raw) }];
      }
      const expertPrompts = s.experts.map((e) =>
        chat ? e.lm.tokenizer.encode(e.lm.tokenizer.applyChatTemplate(messages, true)) : raw,
      );
      const longest = Math.max(raw.length, ...expertPrompts.map((p) => p.length));
      const param = chat ? 'messages' : 'prompt';
      if (raw.length === 0)
        throw new HttpError(400, 'The prompt is empty after tokenization.', { param, code: 'empty_prompt' });
      if (longest + 1 > s.contextLength)
        throw new HttpError(
          400,
          `This EFT route's maximum context length is ${s.contextLength} tokens; the prompt has ${longest} tokens and leaves no room to generate.`,
          { param, code: 'context_length_exceeded' },
        );
      const asked = num(body.max_completion_tokens) ?? num(body.max_tokens);
      const room = s.contextLength - longest;
      if (asked !== undefined && asked > room)
        throw new HttpError(
          400,
          `This EFT route's maximum context length is ${s.contextLength} tokens; ${longest} in the prompt plus max_tokens ${asked} exceed it.`,
          { param: 'max_tokens', code: 'context_length_exceeded' },
        );
      const call: CallOptions = { signal, requestId: ctx.requestId };
      const remote = {
        upstream: upstream as Upstream,
        model: String(body.model),
        k: cfg.large.topLogprobs,
        index: s.index,
        vocab: s.vocab,
        call,
        extra: cfg.large.extra,
        outside: cfg.large.outside,
      };
      const eos = new Set([...s.experts.flatMap((e) => [...e.lm.eos]), ...s.base.eos]);
      const params: EftParams = {
        beta: opts.beta ?? cfg.beta,
        gamma: opts.gamma ?? cfg.gamma,
        temperature: num(body.temperature) ?? 1,
        topP: num(body.top_p) ?? 1,
        topK: num(body.top_k) ?? 0,
        minP: num(body.min_p) ?? 0,
        seed: num(body.seed) ?? randomInt(2 ** 31 - MAX_CHOICES),
        stop: stopList(body.stop),
        maxTokens: asked ?? Math.min(cfg.defaultMaxTokens, room),
        logprobs: logprobsAsked(body, chat),
      };
      // Choice i is a decode of its own (its own model state and calls), seeded seed + i, as the local provider does.
      const decoders = Array.from({ length: num(body.n) ?? 1 }, (_, i) => {
        const large: LargeModel =
          s.kind === 'local'
            ? new LocalLarge(s.large as CausalLM, raw)
            : s.kind === 'completions'
              ? new CompletionsLarge(remote, raw)
              : new ChatLarge({ ...remote, tokenizer: tok, lookahead: cfg.large.lookahead }, messages);
        const experts = s.experts.map((e, j) => ({
          track: new Track(e.lm, expertPrompts[j] as number[]),
          weight: e.weight,
        }));
        return new EftDecoder(
          { large, experts, base: new Track(s.base, raw), tokenizer: tok, eos },
          { ...params, seed: params.seed + i },
        );
      });
      return {
        decoders,
        promptTokens: raw.length,
        // Completions' echo: the prompt comes back in front of the answer, as the local provider and OpenAI do.
        echoText: !chat && body.echo === true ? tok.decode(raw) : '',
        tok,
        chat,
        includeUsage: (body.stream_options as JsonObject | undefined)?.include_usage === true,
      };
    };

    /** Each finished decode in /metrics: tokens, drafts kept, and calls to the large model, by route. */
    const record = (r: EftResult) => {
      const m = env.metrics;
      if (!m) return;
      m.eftTokens.inc({ route: route.model, kind: 'generated' }, r.ids.length);
      m.eftTokens.inc({ route: route.model, kind: 'drafted' }, r.stats.drafted_tokens);
      m.eftTokens.inc({ route: route.model, kind: 'accepted' }, r.stats.accepted_tokens);
      m.eftUpstreamCalls.inc({ route: route.model }, r.stats.upstream_calls);
    };

    return {
      async decode(args: DecodeArgs): Promise<DecodeResult> {
        const { decoders, promptTokens, echoText, tok, chat, includeUsage } = decodeOnce(args);
        const logprobs = (scores: readonly ScoredToken[] | undefined, start = 0) => {
          if (!scores) return null;
          const tokens = scores.map((t) => generatedToken(tok, t));
          return chat ? chatLogprobs(tokens) : completionLogprobs(tokens.map(entryOf), start);
        };
        const model = args.ctx.model;
        const id = `${chat ? 'chatcmpl' : 'cmpl'}-${randomUUID()}`;
        const created = now();
        const usage = (rs: readonly EftResult[]) => {
          const completion = rs.reduce((a, r) => a + r.ids.length, 0);
          return {
            prompt_tokens: promptTokens,
            completion_tokens: completion,
            total_tokens: promptTokens + completion,
          };
        };
        let results: EftResult[] | undefined;
        const annotations = () => ({ eft: results ? eftReport(results) : null });
        // Choices decode concurrently; one that fails stops the others.
        const failed = new AbortController();
        const all = AbortSignal.any([args.signal, failed.signal]);
        const runAll = (
          onText?: (index: number, delta: string, token?: ScoredToken) => void,
          onDone?: (index: number, r: EftResult) => void,
        ) =>
          Promise.all(
            decoders.map((d, i) =>
              d.run(all, onText && ((delta, t) => onText(i, delta, t))).then((r) => {
                onDone?.(i, r);
                return r;
              }),
            ),
          )
            .then((rs) => {
              results = rs;
              for (const r of rs) record(r);
              return rs;
            })
            .catch((err: unknown) => {
              failed.abort();
              throw err;
            });
        if (!args.ctx.stream) {
          const rs = await runAll();
          const choices = rs.map((r, index) =>
            chat
              ? {
                  index,
                  message: { role: 'assistant', content: r.text, refusal: null },
                  logprobs: logprobs(r.scores),
                  finish_reason: r.finishReason,
                }
              : { index, text: echoText + r.text, logprobs: logprobs(r.scores), finish_reason: r.finishReason },
          );
          return {
            kind: 'json',
            body: {
              id,
              object: chat ? 'chat.completion' : 'text_completion',
              created,
              model,
              system_fingerprint: `tandem-eft-${route.model}`,
              choices,
              usage: usage(rs),
            },
            annotations,
          };
        }
        const base = { id, object: chat ? 'chat.completion.chunk' : 'text_completion', created, model };
        const out = new Channel<JsonObject>();
        const chunk = (index: number, delta: string, finish: string | null, lp: JsonObject | null = null) => ({
          ...base,
          choices: [
            chat
              ? { index, delta: finish ? {} : { content: delta }, logprobs: lp, finish_reason: finish }
              : { index, text: delta, logprobs: lp, finish_reason: finish },
          ],
        });
        // Completions' text offsets run on across a choice's chunks, as in the whole answer.
        const offsets = decoders.map(() => 0);
        // The stream opens only once the first token is out, so a failure at the first step (an upstream without
        // logprobs, say) still reaches the client as a plain HTTP error rather than an error event.
        let opened: () => void = () => {};
        const first = new Promise<void>((r) => (opened = r));
        for (const [index] of decoders.entries()) {
          if (chat)
            out.push({
              ...base,
              choices: [{ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
            });
          else if (echoText) out.push(chunk(index, echoText, null));
        }
        const done = runAll(
          (index, delta, token) => {
            const lp = token ? logprobs([token], offsets[index]) : null;
            if (token) offsets[index] = (offsets[index] as number) + tok.tokenText(token.id).length;
            out.push(chunk(index, delta, null, lp));
            opened();
          },
          // Each choice's finishing chunk as soon as it is done, as OpenAI streams them.
          (index, r) => out.push(chunk(index, '', r.finishReason)),
        );
        done.then(
          (rs) => {
            if (includeUsage) out.push({ ...base, choices: [], usage: usage(rs) });
            out.end();
            opened();
          },
          (err: Error) => out.fail(err),
        );
        await Promise.race([first, done]);
        return { kind: 'stream', chunks: out, annotations };
      },
    };
  },
};
