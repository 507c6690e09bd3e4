import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { EftDecoder } from '../src/eft/decoder.js';
import type { LargeModel } from '../src/eft/large.js';
import { rawChatText } from '../src/eft/prompt.js';
import { Track } from '../src/eft/track.js';
import { embeddedDefault } from '../src/proxy/embedded.js';
import type { CausalLM } from '../src/slm/causalLM.js';
import { ModelRegistry } from '../src/slm/registry.js';
import { topK } from '../src/slm/sampling.js';
import { type FakeUpstream, fakeTopLogprobs, startFakeUpstream } from './support/fakeUpstream.js';
import { modelDir } from './support/models.js';
import { type RunningTandem, startTandem } from './support/tandem.js';

const registry = new ModelRegistry();
let remote: RunningTandem;
let t: RunningTandem;
let fake: FakeUpstream;
let fakeTopk: FakeUpstream;
let fakeNoEcho: FakeUpstream;
const VOCAB = 4096;
let large: CausalLM;
let ft: CausalLM;
let base: CausalLM;

const expert = { experts: [{ model: 'tandem-small-chat' }], base: 'tandem-small-base' };
const eft = (extra: Record<string, unknown> = {}) => [{ use: 'eft', config: { ...expert, ...extra } }];
const remoteLarge = (kind: string, outside = 'exclude') => ({
  large: { kind, tokenizer: 'tandem-large-base', topLogprobs: 20, outside },
});

beforeAll(async () => {
  fake = await startFakeUpstream();
  fakeTopk = await startFakeUpstream({ tokenModel: { vocab: VOCAB } });
  fakeNoEcho = await startFakeUpstream({ tokenModel: { vocab: VOCAB, refuseEcho: true } });
  // The "remote" large model: a second Tandem serving tandem-large-base over real HTTP.
  remote = await startTandem(
    { upstreams: { l: { url: 'local:tandem-large-base' } }, routes: [{ model: 'tandem-large-base', upstream: 'l' }] },
    { registry },
  );
  t = await startTandem(
    {
      upstreams: {
        large: { url: 'local:tandem-large-base' },
        remote: { url: `${remote.url}/v1`, maxRetries: 0 },
        fake: { url: fake.url, maxRetries: 0 },
        fakeTopk: { url: fakeTopk.url, maxRetries: 0 },
        fakeNoEcho: { url: fakeNoEcho.url, maxRetries: 0 },
      },
      routes: [
        { model: 'eft', upstream: 'large', plugins: eft() },
        { model: 'large', upstream: 'large' },
        {
          model: 'eft-completions',
          upstream: 'remote',
          upstreamModel: 'tandem-large-base',
          plugins: eft(remoteLarge('completions')),
        },
        {
          model: 'eft-completions-base',
          upstream: 'remote',
          upstreamModel: 'tandem-large-base',
          plugins: eft(remoteLarge('completions', 'base')),
        },
        {
          model: 'eft-chat',
          upstream: 'remote',
          upstreamModel: 'tandem-large-base',
          plugins: eft(remoteLarge('chat')),
        },
        { model: 'eft-fake', upstream: 'fake', plugins: eft(remoteLarge('completions')) },
        { model: 'eft-fake-topk', upstream: 'fakeTopk', plugins: eft(remoteLarge('completions')) },
        { model: 'eft-fake-noecho', upstream: 'fakeNoEcho', plugins: eft(remoteLarge('completions')) },
      ],
      cache: { enabled: false },
    },
    { registry },
  );
  const lm = async (n: string) => (await registry.causalLM(n)).lm;
  [large, ft, base] = [await lm('tandem-large-base'), await lm('tandem-small-chat'), await lm('tandem-small-base')];
}, 60_000);
afterAll(async () => {
  await t?.close();
  await remote?.close();
  await fake?.close();
  await fakeTopk?.close();
  await fakeNoEcho?.close();
  await registry.close();
});

const QUESTION = 'What is the meaning of "abeyance"?';
const messages = [{ role: 'user' as const, content: QUESTION }];
const EOS = new Set([0, 2]);
/** Tandem's own request field, which the SDK's types do not know. */
const extra = (tandem: object): object => ({ tandem });

/**
 * EFT computed straight from the three models: every step a fresh forward pass over the whole sequence (no KV
 * cache, none of src/eft), score = log p_large + beta (log p_ft - log p_base), optionally over the large model's
 * top-k only, greedy.
 */
async function referenceGreedy(
  rawIds: number[],
  chatIds: number[],
  steps: number,
  beta: number,
  k = 0,
  largePrompt = rawIds,
  largeRow: (ids: number[]) => Promise<ArrayLike<number>> = (ids) => large.nextTokenLogprobs(ids),
): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    const [L, F, B] = await Promise.all([
      largeRow([...largePrompt, ...out]),
      ft.nextTokenLogprobs([...chatIds, ...out]),
      base.nextTokenLogprobs([...rawIds, ...out]),
    ]);
    const allowed = k > 0 ? new Set(topK(L, k).map((c) => c.id)) : undefined;
    let best = -1;
    let bestV = Number.NEGATIVE_INFINITY;
    for (let v = 0; v < L.length; v++) {
      if ((allowed && !allowed.has(v)) || L[v] === Number.NEGATIVE_INFINITY) continue;
      const s = (L[v] as number) + beta * ((F[v] as number) - (B[v] as number));
      if (s > bestV) {
        bestV = s;
        best = v;
      }
    }
    if (EOS.has(best)) break;
    out.push(best);
  }
  return out;
}

const prompts = () => {
  const tok = ft.tokenizer;
  return { raw: tok.encode(`${QUESTION}\n`), chat: tok.encode(tok.applyChatTemplate(messages, true)) };
};

/** The EFT log-probability of each of `ids` at its step, from the three models directly (log-softmax of the score). */
async function referenceLogprobs(rawIds: number[], chatIds: number[], ids: number[], beta: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < ids.length; i++) {
    const done = ids.slice(0, i);
    const [L, F, B] = await Promise.all([
      large.nextTokenLogprobs([...rawIds, ...done]),
      ft.nextTokenLogprobs([...chatIds, ...done]),
      base.nextTokenLogprobs([...rawIds, ...done]),
    ]);
    const s = Array.from(L, (l, v) => l + beta * ((F[v] as number) - (B[v] as number)));
    const max = Math.max(...s);
    const lse = max + Math.log(s.reduce((a, x) => a + Math.exp(x - max), 0));
    out.push((s[ids[i] as number] as number) - lse);
  }
  return out;
}

describe('EFT through the proxy (local large model, full logits)', () => {
  test('logprobs are those of the EFT distribution, as computed from the three models; streamed the same', async () => {
    const { raw, chat } = prompts();
    for (const gamma of [0, 4]) {
      const body = { model: 'eft', messages, temperature: 0, max_tokens: 12, logprobs: true, top_logprobs: 3 };
      const r = await t.client.chat.completions.create({ ...body, ...extra({ eft: { gamma } }) });
      const content = r.choices[0]?.logprobs?.content ?? [];
      expect(content).toHaveLength(r.usage?.completion_tokens ?? -1);
      // Back to ids through each token's bytes (unique in a BPE vocabulary).
      const byBytes = new Map(
        Array.from({ length: ft.tokenizer.vocabSize }, (_, id) => [ft.tokenizer.tokenBytes(id).join(','), id]),
      );
      const ids = content.map((c) => byBytes.get((c.bytes ?? []).join(',')) ?? -1);
      expect(ids).not.toContain(-1);
      const want = await referenceLogprobs(raw, chat, ids, 1);
      content.forEach((c, i) => {
        expect(c.logprob).toBeCloseTo(want[i] as number, 4);
        // Greedy: the token drawn is the most likely one, and the alternatives come most likely first.
        expect(c.top_logprobs[0]?.token).toBe(c.token);
        expect(c.top_logprobs.map((x) => x.logprob)).toEqual(
          [...c.top_logprobs.map((x) => x.logprob)].sort((a, b) => b - a),
        );
      });
      const s = await t.client.chat.completions.create({ ...body, stream: true, ...extra({ eft: { gamma } }) });
      const streamed: typeof content = [];
      for await (const c of s) streamed.push(...(c.choices[0]?.logprobs?.content ?? []));
      expect(streamed).toEqual(content);
    }
    const c = await t.client.completions.create({
      model: 'eft',
      prompt: 'The meaning of the word apple is',
      temperature: 0,
      max_tokens: 6,
      logprobs: 2,
    });
    const lp = c.choices[0]?.logprobs;
    expect(lp?.tokens).toHaveLength(c.usage?.completion_tokens ?? -1);
    expect(lp?.tokens?.length).toBeGreaterThan(0);
    expect(lp?.text_offset?.[0]).toBe(0);
    expect(lp?.tokens?.join('')).toBe(c.choices[0]?.text);
    expect(Object.keys(lp?.top_logprobs?.[0] ?? {})).toHaveLength(2);
  });

  test.each([1, 0.5, 2])(
    'greedy EFT with beta %s equals the reference computed from the three models',
    async (beta) => {
      const { raw, chat } = prompts();
      const ref = ft.tokenizer.decode(await referenceGreedy(raw, chat, 20, beta));
      for (const gamma of [0, 4]) {
        const r = await t.client.chat.completions.create({
          model: 'eft',
          messages,
          temperature: 0,
          max_tokens: 20,
          ...extra({ eft: { beta, gamma } }),
        });
        expect(r.choices[0]?.message.content).toBe(ref);
        const info = (r as unknown as { tandem: { eft: Record<string, unknown> } }).tandem.eft;
        expect(info).toMatchObject({ beta, large_kind: 'local', mode: gamma ? 'speculative' : 'token' });
        expect(r.usage?.completion_tokens).toBe(info.generated_tokens);
      }
    },
  );

  test("behaviour mixing: a weighted sum of two experts' deltas, as computed from the models", async () => {
    const mix = await startTandem(
      {
        upstreams: { l: { url: 'local:tandem-large-base' } },
        routes: [
          {
            model: 'mix',
            upstream: 'l',
            plugins: [
              {
                use: 'eft',
                config: {
                  experts: [
                    { model: 'tandem-small-chat', weight: 0.7 },
                    { model: 'tandem-large-chat', weight: 0.3 },
                  ],
                  base: 'tandem-small-base',
                  beta: 1.5,
                },
              },
            ],
          },
        ],
      },
      { registry },
    );
    try {
      const oracle = (await registry.causalLM('tandem-large-chat')).lm;
      const { raw, chat } = prompts();
      const out: number[] = [];
      for (let i = 0; i < 16; i++) {
        const [L, F, O, B] = await Promise.all([
          large.nextTokenLogprobs([...raw, ...out]),
          ft.nextTokenLogprobs([...chat, ...out]),
          oracle.nextTokenLogprobs([...chat, ...out]),
          base.nextTokenLogprobs([...raw, ...out]),
        ]);
        const score = (v: number) =>
          (L[v] as number) +
          1.5 * (0.7 * ((F[v] as number) - (B[v] as number)) + 0.3 * ((O[v] as number) - (B[v] as number)));
        let best = 0;
        for (let v = 1; v < L.length; v++) if (score(v) > score(best)) best = v;
        if (EOS.has(best)) break;
        out.push(best);
      }
      const r = await mix.client.chat.completions.create({ model: 'mix', messages, temperature: 0, max_tokens: 16 });
      expect(r.choices[0]?.message.content).toBe(ft.tokenizer.decode(out));
    } finally {
      await mix.close();
    }
  });

  test('beta 0 gives exactly the large model alone', async () => {
    const prompt = 'The meaning of the word apple is';
    const alone = await t.client.completions.create({ model: 'large', prompt, temperature: 0, max_tokens: 24 });
    const mixed = await t.client.completions.create({
      model: 'eft',
      prompt,
      temperature: 0,
      max_tokens: 24,
      ...extra({ eft: { beta: 0 } }),
    });
    expect(mixed.choices[0]?.text).toBe(alone.choices[0]?.text);
    expect((alone.choices[0]?.text ?? '').length).toBeGreaterThan(0);
  });

  test('/metrics counts what each EFT route generated, drafted and kept, and its calls to the large model', async () => {
    const read = async () => {
      const text = await (await fetch(`${t.url}/metrics`)).text();
      const v = (series: string) => Number(text.match(new RegExp(`^${series} (\\S+)$`, 'm'))?.[1] ?? 0);
      return {
        generated: v('tandem_eft_tokens_total\\{route="eft",kind="generated"\\}'),
        drafted: v('tandem_eft_tokens_total\\{route="eft",kind="drafted"\\}'),
        accepted: v('tandem_eft_tokens_total\\{route="eft",kind="accepted"\\}'),
        calls: v('tandem_eft_upstream_calls_total\\{route="eft"\\}'),
      };
    };
    const before = await read();
    const body = { model: 'eft', messages, temperature: 0, max_tokens: 16, ...extra({ eft: { gamma: 4 } }) };
    const r = await t.client.chat.completions.create(body);
    const s = await t.client.chat.completions.create({ ...body, stream: true });
    for await (const _ of s);
    const after = await read();
    const info = (r as unknown as { tandem: { eft: Record<string, number> } }).tandem.eft;
    // The same greedy request twice, streamed the second time: twice the first one's numbers.
    expect(after.generated - before.generated).toBe(2 * (r.usage?.completion_tokens ?? Number.NaN));
    expect(after.drafted - before.drafted).toBe(2 * (info.drafted_tokens as number));
    expect(after.accepted - before.accepted).toBe(2 * (info.accepted_tokens as number));
    expect(after.calls - before.calls).toBe(2 * (info.upstream_calls as number));
    expect(info.drafted_tokens).toBeGreaterThan(0);
  });

  test('n choices: choice i is the single answer seeded seed + i, streamed or not; usage and tandem.eft add up', async () => {
    const body = { model: 'eft', messages, temperature: 1, max_tokens: 10, seed: 40 };
    const many = await t.client.chat.completions.create({ ...body, n: 3 });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const singles = await Promise.all([40, 41, 42].map((seed) => t.client.chat.completions.create({ ...body, seed })));
    expect(many.choices.map((c) => c.message.content)).toEqual(singles.map((r) => r.choices[0]?.message.content));
    expect(new Set(many.choices.map((c) => c.message.content)).size).toBeGreaterThan(1);
    const sum = (f: (r: (typeof singles)[number]) => number) => singles.reduce((a, r) => a + f(r), 0);
    expect(many.usage?.completion_tokens).toBe(sum((r) => r.usage?.completion_tokens ?? 0));
    const eftOf = (r: object) => (r as { tandem: { eft: Record<string, number> } }).tandem.eft;
    expect(eftOf(many)).toMatchObject({
      choices: 3,
      generated_tokens: sum((r) => eftOf(r).generated_tokens as number),
      upstream_calls: sum((r) => eftOf(r).upstream_calls as number),
    });
    const s = await t.client.chat.completions.create({ ...body, n: 3, stream: true });
    // Each choice finishes once, in its own chunk, when it is done.
    const texts = ['', '', ''];
    const finished: number[] = [];
    for await (const c of s)
      for (const ch of c.choices) {
        texts[ch.index] += ch.delta.content ?? '';
        if (ch.finish_reason) finished.push(ch.index);
      }
    expect(texts).toEqual(many.choices.map((c) => c.message.content));
    expect(finished.sort()).toEqual([0, 1, 2]);
  });

  test("a chat's next turn starts every local model from the prefix cache, and answers exactly as computed afresh", async () => {
    const turn1 = messages;
    const body = { model: 'eft', temperature: 0, max_tokens: 12 };
    const r1 = await t.client.chat.completions.create({ ...body, messages: turn1 });
    const turn2 = [
      ...turn1,
      { role: 'assistant' as const, content: r1.choices[0]?.message.content ?? '' },
      { role: 'user' as const, content: 'And what does "candle" mean?' },
    ];
    const tok = ft.tokenizer;
    const chat2 = tok.encode(tok.applyChatTemplate(turn2, true));
    const raw2 = tok.encode(rawChatText(turn2));
    // What each model is fed for the new prompt: with the cache, only the part after what turn 1 left behind.
    const fed = new Map<CausalLM, number>();
    const spies = [large, ft, base].map((lm) =>
      vi.spyOn(lm, 'forward').mockImplementation(async function (this: CausalLM, input) {
        if (!fed.has(lm)) fed.set(lm, input.ids[0]?.length ?? 0);
        return (Object.getPrototypeOf(lm) as CausalLM).forward.call(lm, input);
      }),
    );
    let r2: Awaited<ReturnType<typeof t.client.chat.completions.create>>;
    try {
      r2 = await t.client.chat.completions.create({ ...body, messages: turn2 });
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
    // The chat template keeps turn 1 intact in turn 2, so the fine-tuned expert starts past all of it. (The base
    // models' raw text joins turns with a blank line, which re-tokenizes the end of turn 1: they match less.)
    expect(fed.get(ft)).toBeLessThan(chat2.length - 16);
    const want = tok.decode(await referenceGreedy(raw2, chat2, 12, 1));
    expect((r2 as { choices: { message: { content: string | null } }[] }).choices[0]?.message.content).toBe(want);
  });

  test('completions with echo return the prompt in front of the answer, streamed or not', async () => {
    const body = { model: 'eft', prompt: 'The meaning of the word apple is', temperature: 0, max_tokens: 8 };
    const plain = (await t.client.completions.create(body)).choices[0]?.text ?? '';
    const echoed = await t.client.completions.create({ ...body, echo: true });
    expect(echoed.choices[0]?.text).toBe(body.prompt + plain);
    const s = await t.client.completions.create({ ...body, echo: true, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.text ?? '';
    expect(text).toBe(body.prompt + plain);
  });

  test('speculative decoding cuts large-model calls and keeps greedy output identical', async () => {
    const ask = (gamma: number) =>
      t.client.chat.completions.create({
        model: 'eft',
        messages: [{ role: 'user', content: 'Define apple.' }],
        temperature: 0,
        max_tokens: 32,
        ...extra({ eft: { gamma } }),
      });
    const [naive, spec] = await Promise.all([ask(0), ask(6)]);
    expect(spec.choices[0]?.message.content).toBe(naive.choices[0]?.message.content);
    const info = (r: unknown) => (r as { tandem: { eft: Record<string, number> } }).tandem.eft;
    const n = info(naive);
    const s = info(spec);
    expect(n.upstream_calls).toBeGreaterThanOrEqual(n.generated_tokens as number);
    expect(s.upstream_calls).toBeLessThan(n.upstream_calls as number);
    expect(s.accepted_tokens).toBeGreaterThan(0);
    expect(s.accepted_tokens).toBeLessThanOrEqual(s.drafted_tokens as number);
  });

  test('streams the same text, with tandem.eft in the final event', async () => {
    const body = { model: 'eft', messages, temperature: 0, max_tokens: 16 } as const;
    const whole = await t.client.chat.completions.create(body);
    const stream = await t.client.chat.completions.create({
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: number | undefined;
    let eftInfo: unknown;
    for await (const c of stream) {
      text += c.choices[0]?.delta?.content ?? '';
      if (c.usage) usage = c.usage.completion_tokens;
      const extra = (c as unknown as { tandem?: { eft?: unknown } }).tandem;
      if (extra) eftInfo = extra.eft;
    }
    expect(text).toBe(whole.choices[0]?.message.content);
    expect(usage).toBe(whole.usage?.completion_tokens);
    expect(eftInfo).toMatchObject({ beta: 1, large_kind: 'local' });
  });

  test('seeded sampling is reproducible; stop strings cut the answer', async () => {
    const body = { model: 'eft', messages, temperature: 0.9, top_p: 0.9, seed: 11, max_tokens: 24 } as const;
    const [a, b] = await Promise.all([t.client.chat.completions.create(body), t.client.chat.completions.create(body)]);
    expect(a.choices[0]?.message.content).toBe(b.choices[0]?.message.content);
    const full =
      (await t.client.chat.completions.create({ ...body, temperature: 0 })).choices[0]?.message.content ?? '';
    const word = full.split(' ')[2] as string;
    const cut = await t.client.chat.completions.create({ ...body, temperature: 0, stop: [` ${word}`] });
    expect(cut.choices[0]?.message.content).toBe(full.slice(0, full.indexOf(` ${word}`)));
    expect(cut.choices[0]?.finish_reason).toBe('stop');
  });
});

test('the embedded default (npm start with no config) serves tandem-eft', async () => {
  const e = await startTandem(embeddedDefault(), { registry });
  try {
    const ids = (await e.client.models.list()).data.map((m) => m.id);
    expect(ids).toContain('tandem-eft');
    const r = await e.client.chat.completions.create({ model: 'tandem-eft', messages, temperature: 0, max_tokens: 8 });
    expect((r as unknown as { tandem: { eft: { large_kind: string; beta: number } } }).tandem.eft).toMatchObject({
      large_kind: 'local',
      beta: 1,
    });
  } finally {
    await e.close();
  }
});

describe('EFT against remote large models (real HTTP)', () => {
  test('completions upstream with logprobs: k combines on the top-k support and reports the mass it covered', async () => {
    const { raw, chat } = prompts();
    const ref = ft.tokenizer.decode(await referenceGreedy(raw, chat, 16, 1, 20));
    for (const gamma of [0, 4]) {
      const r = await t.client.chat.completions.create({
        model: 'eft-completions',
        messages,
        temperature: 0,
        max_tokens: 16,
        ...extra({ eft: { gamma } }),
      });
      expect(r.choices[0]?.message.content).toBe(ref);
      const info = (r as unknown as { tandem: { eft: Record<string, number | string> } }).tandem.eft;
      expect(info.large_kind).toBe('completions');
      expect(info.covered_mass_min).toBeGreaterThan(0);
      expect(info.covered_mass_min).toBeLessThan(1);
      expect(info.covered_mass_mean).toBeLessThanOrEqual(1);
      if (gamma) expect(info.upstream_calls).toBeLessThan(info.generated_tokens as number);
      else expect(info.upstream_calls).toBe(info.generated_tokens === 16 ? 16 : (info.generated_tokens as number) + 1);
    }
  });

  test('outside: base fills the tokens beyond the top-k from the small base, so the answer can end', async () => {
    const { raw, chat } = prompts();
    // The large model's top-20, the rest of its mass shared in the small base's proportions.
    const filled = async (ids: number[]) => {
      const [L, B] = await Promise.all([large.nextTokenLogprobs(ids), base.nextTokenLogprobs(ids)]);
      const top = new Set(topK(L, 20).map((c) => c.id));
      const row = new Float32Array(L.length);
      let covered = 0;
      let rest = 0;
      for (let v = 0; v < L.length; v++) {
        if (top.has(v)) covered += Math.exp(L[v] as number);
        else rest += Math.exp(B[v] as number);
      }
      for (let v = 0; v < L.length; v++)
        row[v] = top.has(v) ? (L[v] as number) : Math.log(1 - covered) + (B[v] as number) - Math.log(rest);
      return row;
    };
    const refIds = await referenceGreedy(raw, chat, 40, 1, 0, raw, filled);
    expect(refIds.length).toBeLessThan(40);
    for (const gamma of [0, 6]) {
      const r = await t.client.chat.completions.create({
        model: 'eft-completions-base',
        messages,
        temperature: 0,
        max_tokens: 40,
        ...extra({ eft: { gamma } }),
      });
      expect(r.choices[0]?.message.content).toBe(ft.tokenizer.decode(refIds));
      expect(r.choices[0]?.finish_reason).toBe('stop');
    }
  });

  test('chat upstream with top_logprobs: the large model runs ahead, continuing a partial answer', async () => {
    const { raw, chat } = prompts();
    const ref = ft.tokenizer.decode(await referenceGreedy(raw, chat, 16, 1, 20, chat));
    const r = await t.client.chat.completions.create({ model: 'eft-chat', messages, temperature: 0, max_tokens: 16 });
    expect(r.choices[0]?.message.content).toBe(ref);
    const info = (r as unknown as { tandem: { eft: Record<string, number | string> } }).tandem.eft;
    expect(info.large_kind).toBe('chat');
    expect(info.upstream_calls).toBeGreaterThan(0);
  });

  test('top-k path against a fake /v1/completions upstream: EFT on its support, speculative via echo, token by token without', async () => {
    const { raw, chat } = prompts();
    const fakeRow = async (ids: number[]) => {
      const row = new Float32Array(VOCAB).fill(Number.NEGATIVE_INFINITY);
      for (const c of fakeTopLogprobs(ids, 20, VOCAB)) row[c.id] = c.logprob;
      return row;
    };
    const ref = ft.tokenizer.decode(await referenceGreedy(raw, chat, 12, 1, 0, raw, fakeRow));
    const ask = async (model: string, gamma: number) => {
      const r = await t.client.chat.completions.create({
        model,
        messages,
        temperature: 0,
        max_tokens: 12,
        ...extra({ eft: { gamma } }),
      });
      return {
        text: r.choices[0]?.message.content,
        info: (r as unknown as { tandem: { eft: Record<string, number | string> } }).tandem.eft,
      };
    };
    const token = await ask('eft-fake-topk', 0);
    const spec = await ask('eft-fake-topk', 4);
    const noEcho = await ask('eft-fake-noecho', 4);
    expect(token.text).toBe(ref);
    expect(spec.text).toBe(ref);
    expect(noEcho.text).toBe(ref);
    expect(token.info.upstream_calls).toBe(12);
    expect(spec.info).toMatchObject({ mode: 'speculative' });
    // The synthetic model shares nothing with the drafter, so drafts are rejected; what matters is that blocks went
    // up as echo calls and the output is still exact.
    expect(spec.info.drafted_tokens).toBeGreaterThan(0);
    expect(spec.info.upstream_calls).toBeLessThanOrEqual(12);
    expect(fakeTopk.received.some((r) => r.body.echo === true)).toBe(true);
    // The synthetic model's top-20 holds 1 - e^-0.5 ... of its mass: what tandem.eft reports.
    const mass = fakeTopLogprobs([], 20, VOCAB).reduce((a, c) => a + Math.exp(c.logprob), 0);
    expect(token.info.covered_mass_mean).toBeCloseTo(Math.min(1, mass), 6);
    // Echo refused (400): falls back to one call per token, same output.
    expect(noEcho.info).toMatchObject({ mode: 'token' });
    expect(noEcho.info.upstream_calls).toBeGreaterThanOrEqual(12);
    expect(fakeNoEcho.received.some((r) => r.body.echo === true)).toBe(true);
    expect(fakeTopk.received.every((r) => Array.isArray(r.body.prompt) && r.body.logprobs === 20)).toBe(true);
  });

  test('an upstream that returns no logprobs is a 400 naming the problem, streamed or not', async () => {
    for (const stream of [false, true]) {
      const err = await t.client.chat.completions
        .create({ model: 'eft-fake', messages, max_tokens: 8, stream })
        .then(async (s) => {
          if (stream) for await (const _ of s as AsyncIterable<unknown>);
          return undefined;
        })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(APIError);
      expect((err as APIError).status).toBe(400);
      expect((err as APIError).code).toBe('upstream_without_logprobs');
    }
  });
});

describe('bad input and refused configs', () => {
  test.each([
    [{ beta: 5 }, 'tandem.eft.beta'],
    [{ beta: -0.1 }, 'tandem.eft.beta'],
    [{ beta: 'high' }, 'tandem.eft.beta'],
    [{ gamma: 2.5 }, 'tandem.eft.gamma'],
    [{ betta: 1 }, 'tandem.eft'],
  ])('tandem.eft %j is a 400', async (opt, param) => {
    const err = await t.client.chat.completions
      .create({ model: 'eft', messages, ...extra({ eft: opt }) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).param).toBe(param);
  });

  test('n above 16, echo with logprobs, a prompt too long: clear 400s', async () => {
    const codes = await Promise.all([
      t.client.chat.completions.create({ model: 'eft', messages, n: 17 }).then(
        () => 'ok',
        (e: APIError) => e.param,
      ),
      t.client.completions.create({ model: 'eft', prompt: QUESTION, echo: true, logprobs: 1 }).then(
        () => 'ok',
        (e: APIError) => e.param,
      ),
      t.client.chat.completions
        .create({ model: 'eft', messages: [{ role: 'user', content: 'word '.repeat(400) }] })
        .then(
          () => 'ok',
          (e: APIError) => e.code,
        ),
    ]);
    expect(codes).toEqual(['n', 'logprobs', 'context_length_exceeded']);
  });

  test('penalties, logit_bias, best_of and suffix EFT does not apply are a 400 naming them; neutral values pass', async () => {
    for (const [param, value] of [
      ['presence_penalty', 0.5],
      ['frequency_penalty', -0.5],
      ['repetition_penalty', 1.2],
      ['logit_bias', { '17': -100 }],
    ] as const) {
      const err = await t.client.chat.completions
        .create({ model: 'eft', messages, max_tokens: 2, ...({ [param]: value } as object) })
        .catch((e: unknown) => e);
      expect(err, param).toBeInstanceOf(APIError);
      expect((err as APIError).param).toBe(param);
      expect((err as APIError).code).toBe('unsupported_parameter');
    }
    for (const [param, value] of [
      ['best_of', 3],
      ['suffix', ' end'],
    ] as const) {
      const err = await t.client.completions
        .create({ model: 'eft', prompt: QUESTION, max_tokens: 2, ...({ [param]: value } as object) })
        .catch((e: unknown) => e);
      expect((err as APIError).param).toBe(param);
      expect((err as APIError).code).toBe('unsupported_parameter');
    }
    const neutral = await t.client.chat.completions.create({
      model: 'eft',
      messages,
      max_tokens: 2,
      presence_penalty: 0,
      frequency_penalty: 0,
      logit_bias: {},
    });
    expect(neutral.choices).toHaveLength(1);
  });

  test('a required tool call or guaranteed JSON is a 400; tools under tool_choice auto get a text answer', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'lookup', parameters: { type: 'object' } } }];
    const refused = await Promise.all([
      t.client.chat.completions.create({ model: 'eft', messages, tools, tool_choice: 'required' }).then(
        () => 'ok',
        (e: APIError) => `${e.status} ${e.param} ${e.code}`,
      ),
      t.client.chat.completions.create({ model: 'eft', messages, response_format: { type: 'json_object' } }).then(
        () => 'ok',
        (e: APIError) => `${e.status} ${e.param} ${e.code}`,
      ),
    ]);
    expect(refused).toEqual(['400 tool_choice unsupported_parameter', '400 response_format unsupported_parameter']);
    const auto = await t.client.chat.completions.create({ model: 'eft', messages, tools, max_tokens: 4 });
    expect(auto.choices[0]?.message.tool_calls ?? []).toEqual([]);
    expect(auto.choices[0]?.message.content?.length).toBeGreaterThan(0);
  });

  test('beta outside [0, 4] in the config is refused at load', async () => {
    await expect(
      startTandem(
        {
          upstreams: { l: { url: 'local:tandem-large-base' } },
          routes: [{ model: 'e', upstream: 'l', plugins: eft({ beta: 4.5 }) }],
        },
        { registry },
      ),
    ).rejects.toThrow(/beta/);
  });

  test('a missing small model, a remote large model without a declared tokenizer: refused at start-up', async () => {
    type Plugins = { use: string; config: unknown }[];
    const cfg = (plugins: Plugins, url = 'local:tandem-large-base') => ({
      upstreams: { l: { url } },
      routes: [{ model: 'e', upstream: 'l', plugins }],
    });
    await expect(
      startTandem(cfg([{ use: 'eft', config: { experts: [{ model: 'no-such-model' }], base: 'tandem-small-base' } }]), {
        registry,
      }),
    ).rejects.toThrow(/expert model 'no-such-model'/);
    await expect(startTandem(cfg(eft({ large: { kind: 'completions' } }), fake.url), { registry })).rejects.toThrow(
      /large\.tokenizer must name/,
    );
  });

  test('a small model with another tokenizer is refused at start-up, naming both', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-eft-'));
    try {
      const other = join(dir, 'other-base');
      cpSync(modelDir('tandem-small-base'), other, { recursive: true });
      const tj = JSON.parse(readFileSync(join(other, 'tokenizer.json'), 'utf8')) as {
        model: { vocab: Record<string, number> };
      };
      // Swap two ids: same size, same files, different tokenizer.
      const [a, b] = ['the', 'and'].map((w) => `Ġ${w}`);
      const va = tj.model.vocab[a as string] as number;
      tj.model.vocab[a as string] = tj.model.vocab[b as string] as number;
      tj.model.vocab[b as string] = va;
      writeFileSync(join(other, 'tokenizer.json'), JSON.stringify(tj));
      const err = await startTandem(
        {
          upstreams: { l: { url: 'local:tandem-large-base' } },
          routes: [{ model: 'e', upstream: 'l', plugins: [{ use: 'eft', config: { ...expert, base: other } }] }],
        },
        { registry },
      ).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/tokenizer mismatch.*base '.*other-base'.*upstream 'l'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('speculative sampling keeps the EFT distribution', () => {
  const params = { beta: 1, temperature: 0.7, topK: 2, topP: 1, stop: [] as string[], maxTokens: 3 };
  const SAMPLES = 5_000;

  /** The exact distribution of the next 3 tokens under token-by-token EFT (top-2 at temperature 0.7), enumerated. */
  async function exact(useExpertOnly = false): Promise<Map<string, number>> {
    const { raw, chat } = prompts();
    const out = new Map<string, number>();
    const walk = async (prefix: number[], p: number): Promise<void> => {
      if (prefix.length === 3) {
        out.set(prefix.join(','), p);
        return;
      }
      const [L, F, B] = await Promise.all([
        large.nextTokenLogprobs([...raw, ...prefix]),
        ft.nextTokenLogprobs([...chat, ...prefix]),
        base.nextTokenLogprobs([...raw, ...prefix]),
      ]);
      const s = Array.from(L, (l, v) => (useExpertOnly ? (F[v] as number) : l + (F[v] as number) - (B[v] as number)));
      const top = topK(s, 2);
      const w = top.map((c) => Math.exp((c.value - (top[0] as { value: number }).value) / params.temperature));
      const z = w.reduce((x, y) => x + y, 0);
      for (const [i, c] of top.entries()) await walk([...prefix, c.id], (p * (w[i] as number)) / z);
    };
    await walk([], 1);
    return out;
  }

  /**
   * The models' rows are memoised by prefix: the tree of 3-token continuations has few nodes, and re-running them for
   * every sample would only repeat the same forward passes. What is under test, the decoder's combination, warping,
   * drafting and acceptance, runs in full for every sample.
   */
  class MemoTrack extends Track {
    private readonly memo = new Map<string, Float32Array[]>();
    override async rowsFor(generated: readonly number[]): Promise<Float32Array[]> {
      const key = generated.join(',');
      let rows = this.memo.get(key);
      if (!rows) {
        rows = await super.rowsFor(generated);
        this.memo.set(key, rows);
      }
      return rows;
    }
  }
  class MemoLarge implements LargeModel {
    readonly kind = 'local';
    readonly scoresBlocks = true;
    calls = 0;
    constructor(private readonly track: MemoTrack) {}
    async next(generated: readonly number[]) {
      return { logprobs: await this.track.next(generated), covered: 1 };
    }
    async block(generated: readonly number[], draft: readonly number[]) {
      const rows = await this.track.rowsFor([...generated, ...draft]);
      return rows.slice(generated.length).map((logprobs) => ({ logprobs, covered: 1 }));
    }
  }

  async function sampled(gamma: number): Promise<Map<string, number>> {
    const { raw, chat } = prompts();
    const models = {
      large: new MemoLarge(new MemoTrack(large, raw)),
      experts: [{ track: new MemoTrack(ft, chat), weight: 1 }],
      base: new MemoTrack(base, raw),
      tokenizer: ft.tokenizer,
      eos: new Set<number>(),
    };
    const counts = new Map<string, number>();
    const signal = new AbortController().signal;
    for (let seed = 1; seed <= SAMPLES; seed++) {
      const r = await new EftDecoder(models, { ...params, gamma, seed }).run(signal);
      const key = r.ids.join(',');
      counts.set(key, (counts.get(key) ?? 0) + 1 / SAMPLES);
    }
    return counts;
  }

  const tvd = (a: Map<string, number>, b: Map<string, number>) => {
    let d = 0;
    for (const k of new Set([...a.keys(), ...b.keys()])) d += Math.abs((a.get(k) ?? 0) - (b.get(k) ?? 0));
    return d / 2;
  };

  test(`total variation distance over ${SAMPLES} seeded samples of the next 3 tokens is below 0.03`, async () => {
    const truth = await exact();
    const [token, spec] = [await sampled(0), await sampled(3)];
    const figures = { specVsToken: tvd(spec, token), specVsExact: tvd(spec, truth), tokenVsExact: tvd(token, truth) };
    console.log('EFT TVD', JSON.stringify(figures));
    expect(figures.specVsToken).toBeLessThan(0.03);
    expect(figures.specVsExact).toBeLessThan(0.03);
    expect(figures.tokenVsExact).toBeLessThan(0.03);
    // The check can fail: sampling from the drafter alone (accepting every draft) would be this far off.
    const drafterOnly = tvd(await exact(true), truth);
    console.log('drafter-only TVD', drafterOnly);
    expect(drafterOnly).toBeGreaterThan(0.1);
  }, 180_000);
});
