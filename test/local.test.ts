import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { builtinPlugins } from '../src/plugins/registry.js';
import { loadConfig } from '../src/proxy/loadConfig.js';
import { createServer } from '../src/proxy/server.js';
import { readModelFolder } from '../src/slm/folder.js';
import { ModelRegistry } from '../src/slm/registry.js';
import { TextTokenizer } from '../src/slm/tokenizer.js';
import { modelDir } from './support/models.js';
import { post, sseEvents } from './support/raw.js';
import { type RunningTandem, startTandem } from './support/tandem.js';

let t: RunningTandem;
const registry = new ModelRegistry();
beforeAll(async () => {
  t = await startTandem(
    {
      upstreams: { chat: { url: 'local:tandem-large-chat' }, base: { url: `local:${modelDir('tandem-large-base')}` } },
      routes: [
        { model: 'tandem-chat', upstream: 'chat' },
        { model: 'tandem-large-base', upstream: 'base' },
      ],
    },
    { registry },
  );
});
afterAll(async () => {
  await t.close();
  await registry.close();
});

const ask = (content: string) => [{ role: 'user' as const, content }];

describe('chat through the openai SDK', () => {
  test('greedy at temperature 0, max_tokens, usage, chat template applied', async () => {
    const r = await t.client.chat.completions.create({
      model: 'tandem-chat',
      messages: ask('What does the word "harbour" mean?'),
      temperature: 0,
      max_tokens: 24,
    });
    const again = await t.client.chat.completions.create({
      model: 'tandem-chat',
      messages: ask('What does the word "harbour" mean?'),
      temperature: 0,
      max_tokens: 24,
    });
    const text = r.choices[0]?.message.content ?? '';
    expect(text.length).toBeGreaterThan(0);
    expect(again.choices[0]?.message.content).toBe(text);
    expect(text).not.toContain('<|im_end|>');
    expect(r.usage?.completion_tokens).toBeLessThanOrEqual(24);
    expect(r.usage?.total_tokens).toBe((r.usage?.prompt_tokens ?? 0) + (r.usage?.completion_tokens ?? 0));
    // The chat template wraps the message: more prompt tokens than the bare question.
    expect(r.usage?.prompt_tokens).toBeGreaterThan(10);
    expect(['stop', 'length']).toContain(r.choices[0]?.finish_reason);
  });

  test('logprobs and top_logprobs (up to 20) with token bytes', async () => {
    const r = await t.client.chat.completions.create({
      model: 'tandem-chat',
      messages: ask('Name a metal.'),
      temperature: 0,
      max_tokens: 6,
      logprobs: true,
      top_logprobs: 20,
    });
    const lp = r.choices[0]?.logprobs?.content ?? [];
    expect(lp.length).toBe(r.usage?.completion_tokens);
    for (const tok of lp) {
      expect(tok.top_logprobs).toHaveLength(20);
      // Greedy: the chosen token is the most likely one.
      expect(tok.logprob).toBeCloseTo(tok.top_logprobs[0]?.logprob ?? 0, 5);
      expect(Buffer.from(tok.bytes ?? []).length).toBeGreaterThan(0);
    }
    expect(
      lp
        .map((x) => Buffer.from(x.bytes ?? []))
        .reduce((a, b) => Buffer.concat([a, b]), Buffer.alloc(0))
        .toString('utf8'),
    ).toBe(r.choices[0]?.message.content);
  });

  test('streaming matches the non-streamed answer, with usage', async () => {
    const body = { model: 'tandem-chat', messages: ask('What is gold?'), temperature: 0, max_tokens: 20 };
    const whole = await t.client.chat.completions.create(body);
    const s = await t.client.chat.completions.create({
      ...body,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: unknown;
    let finish: string | null | undefined;
    for await (const c of s) {
      text += c.choices[0]?.delta?.content ?? '';
      finish ??= c.choices[0]?.finish_reason;
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(whole.choices[0]?.message.content);
    expect(usage).toEqual(whole.usage);
    expect(finish).toBe(whole.choices[0]?.finish_reason);
  });

  test('stop strings and n choices', async () => {
    const base = {
      model: 'tandem-chat',
      messages: ask('What does the word "lamp" mean?'),
      temperature: 0,
      max_tokens: 30,
    };
    const free = (await t.client.chat.completions.create(base)).choices[0]?.message.content ?? '';
    expect(free.length).toBeGreaterThan(4);
    const mid = Math.floor(free.length / 2);
    const stop = free.slice(mid, mid + 2);
    const cut = await t.client.chat.completions.create({ ...base, stop: [stop] });
    expect(cut.choices[0]?.message.content).toBe(free.slice(0, free.indexOf(stop)));
    const many = await t.client.chat.completions.create({ ...base, temperature: 1, n: 3, seed: 1, max_tokens: 8 });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2]);
  });
});

test('/metrics counts each local model engine: prompt and generated tokens, queue, refusals', async () => {
  const read = async () => {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const value = (name: string, labels: string) =>
      Number(text.match(new RegExp(`^${name}\\{${labels}\\} (\\S+)$`, 'm'))?.[1] ?? Number.NaN);
    return {
      prompt: value('tandem_local_tokens_total', 'model="tandem-large-chat",kind="prompt"'),
      cached: value('tandem_local_tokens_total', 'model="tandem-large-chat",kind="cached"'),
      generated: value('tandem_local_tokens_total', 'model="tandem-large-chat",kind="generated"'),
      active: value('tandem_local_sequences', 'model="tandem-large-chat",state="active"'),
      waiting: value('tandem_local_sequences', 'model="tandem-large-chat",state="waiting"'),
      refused: value('tandem_local_refused_total', 'model="tandem-large-chat"'),
    };
  };
  const before = await read();
  expect(Object.values(before).every(Number.isFinite)).toBe(true);
  const r = await t.client.chat.completions.create({
    model: 'tandem-chat',
    messages: ask('What is a lamp?'),
    n: 2,
    max_tokens: 5,
    temperature: 0,
    ...({ ignore_eos: true } as object),
  });
  const after = await read();
  expect(after.generated - before.generated).toBe(10);
  expect(r.usage?.completion_tokens).toBe(10);
  // Each choice's prompt is prefilled or, where an earlier request began the same way, taken from the prefix cache.
  expect(after.prompt - before.prompt + (after.cached - before.cached)).toBe(2 * (r.usage?.prompt_tokens ?? 0));
  expect(after).toMatchObject({ active: 0, waiting: 0, refused: before.refused });
});

test('every 429 of a full queue is counted in tandem_local_refused_total, streamed or not', async () => {
  const busy = await startTandem({
    models: { tiny: { path: modelDir('tandem-small-chat'), maxBatch: 1, queueLimit: 2 } },
    upstreams: { tiny: { url: 'local:tiny' } },
    routes: [{ model: 'tiny', upstream: 'tiny' }],
  });
  try {
    const statuses = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        post(`${busy.url}/v1/chat/completions`, {
          model: 'tiny',
          messages: ask(`Question ${i}: what is a lamp?`),
          max_tokens: 48,
          ignore_eos: true,
          stream: i % 2 === 0,
        }).then((r) => r.status),
      ),
    );
    const refused = statuses.filter((s) => s === 429).length;
    expect(refused).toBeGreaterThan(0);
    expect(statuses.filter((s) => s === 200).length).toBe(12 - refused);
    const text = await (await fetch(`${busy.url}/metrics`)).text();
    expect(text).toContain(`tandem_local_refused_total{model="tiny"} ${refused}\n`);
  } finally {
    await busy.close();
  }
});

test("generation_config.json's sampling defaults apply when the request leaves them out, top_k included", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tandem-gencfg-'));
  try {
    cpSync(modelDir('tandem-small-chat'), dir, { recursive: true });
    const genPath = join(dir, 'generation_config.json');
    const gen = JSON.parse(readFileSync(genPath, 'utf8')) as Record<string, unknown>;
    // Sampling on, but only the single most likely token allowed: every seed must give the greedy answer.
    writeFileSync(genPath, JSON.stringify({ ...gen, do_sample: true, temperature: 1, top_k: 1 }));
    const s = await startTandem({ upstreams: { m: { url: `local:${dir}` } }, routes: [{ model: 'm', upstream: 'm' }] });
    try {
      const body = { model: 'm', messages: ask('What is a lamp?'), max_tokens: 16 };
      const greedy = (await s.client.chat.completions.create({ ...body, temperature: 0 })).choices[0]?.message.content;
      for (const seed of [1, 2, 3]) {
        const r = await s.client.chat.completions.create({ ...body, seed });
        expect(r.choices[0]?.message.content).toBe(greedy);
      }
      // The request's own top_k wins over the file's.
      const free = await Promise.all(
        [1, 2, 3, 4].map((seed) => s.client.chat.completions.create({ ...body, seed, ...({ top_k: 0 } as object) })),
      );
      expect(free.some((r) => r.choices[0]?.message.content !== greedy)).toBe(true);
    } finally {
      await s.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('min_p 1 keeps only the most likely token: any seed gives the greedy answer, here and through EFT', async () => {
  const body = { model: 'tandem-chat', messages: ask('What is a lamp?'), max_tokens: 16 };
  const greedy = (await t.client.chat.completions.create({ ...body, temperature: 0 })).choices[0]?.message.content;
  for (const seed of [1, 2]) {
    const r = await t.client.chat.completions.create({ ...body, temperature: 1, seed, ...({ min_p: 1 } as object) });
    expect(r.choices[0]?.message.content).toBe(greedy);
  }
  const e = await startTandem(
    {
      upstreams: { large: { url: 'local:tandem-large-base' } },
      routes: [
        {
          model: 'eft',
          upstream: 'large',
          plugins: [{ use: 'eft', config: { experts: [{ model: 'tandem-small-chat' }], base: 'tandem-small-base' } }],
        },
      ],
    },
    { registry },
  );
  try {
    const eft = { ...body, model: 'eft' };
    const eftGreedy = (await e.client.chat.completions.create({ ...eft, temperature: 0 })).choices[0]?.message.content;
    const eftMinP = await e.client.chat.completions.create({
      ...eft,
      temperature: 1,
      seed: 3,
      ...({ min_p: 1 } as object),
    });
    expect(eftMinP.choices[0]?.message.content).toBe(eftGreedy);
  } finally {
    await e.close();
  }
});

test("a chat's next turn is prefilled only past the part the prefix cache holds, with the same answer", async () => {
  const cachedTokens = async (url: string) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    return Number(text.match(/^tandem_local_tokens_total\{model="tandem-large-chat",kind="cached"\} (\S+)$/m)?.[1]);
  };
  const cold = await startTandem({
    models: { nocache: { path: modelDir('tandem-large-chat'), prefixCacheMB: 0 } },
    upstreams: { m: { url: 'local:nocache' } },
    routes: [{ model: 'nocache', upstream: 'm' }],
  });
  try {
    const turn1 = [{ role: 'user' as const, content: 'What does the word lamp mean? Answer in one sentence.' }];
    const body = { temperature: 0, max_tokens: 24 };
    const a1 = await t.client.chat.completions.create({ model: 'tandem-chat', messages: turn1, ...body });
    const turn2 = [
      ...turn1,
      { role: 'assistant' as const, content: a1.choices[0]?.message.content ?? '' },
      { role: 'user' as const, content: 'And what does the word candle mean?' },
    ];
    const before = await cachedTokens(t.url);
    const a2 = await t.client.chat.completions.create({ model: 'tandem-chat', messages: turn2, ...body });
    const after = await cachedTokens(t.url);
    // At least the whole first prompt came from the cache.
    expect(after - before).toBeGreaterThanOrEqual(a1.usage?.prompt_tokens ?? Number.POSITIVE_INFINITY);
    const coldA2 = await cold.client.chat.completions.create({ model: 'nocache', messages: turn2, ...body });
    expect(a2.choices[0]?.message.content).toBe(coldA2.choices[0]?.message.content);
  } finally {
    await cold.close();
  }
});

describe('penalties', () => {
  test('repetition, presence and frequency penalties change greedy output and keep it deterministic', async () => {
    const ask1 = { model: 'tandem-chat', messages: ask('Quote Genesis 1:1.'), temperature: 0, max_tokens: 40 };
    const plain = await t.client.chat.completions.create({ ...ask1, repetition_penalty: 1 } as never);
    const pen = await t.client.chat.completions.create({ ...ask1, repetition_penalty: 1.5 } as never);
    const pen2 = await t.client.chat.completions.create({ ...ask1, repetition_penalty: 1.5 } as never);
    const freq = await t.client.chat.completions.create({
      ...ask1,
      repetition_penalty: 1,
      frequency_penalty: 2,
    } as never);
    const words = (s: string | null | undefined) => (s ?? '').split(/\s+/).filter(Boolean);
    const distinct = (s: string | null | undefined) => new Set(words(s)).size / Math.max(1, words(s).length);
    expect(pen.choices[0]?.message.content).toBe(pen2.choices[0]?.message.content);
    expect(pen.choices[0]?.message.content).not.toBe(plain.choices[0]?.message.content);
    expect(freq.choices[0]?.message.content).not.toBe(plain.choices[0]?.message.content);
    // The penalised answers repeat themselves less.
    expect(distinct(pen.choices[0]?.message.content)).toBeGreaterThan(distinct(plain.choices[0]?.message.content));
  });
});

test('logit_bias forces and bans tokens', async () => {
  const base = {
    model: 'tandem-large-base',
    prompt: 'In the beginning God created',
    max_tokens: 6,
    temperature: 0,
    logprobs: 0,
  };
  // The text of token 42, by echoing it as a token-id prompt.
  const echo = await t.client.completions.create({ ...base, prompt: [42], max_tokens: 0, echo: true });
  const t42 = echo.choices[0]?.logprobs?.tokens?.[0];
  const forced = await t.client.completions.create({ ...base, logit_bias: { '42': 100 } });
  expect(forced.choices[0]?.logprobs?.tokens).toEqual(Array(6).fill(t42));
  // Ban the first token of the plain answer: the answer starts differently.
  const plain = await t.client.completions.create(base);
  const first = plain.choices[0]?.logprobs?.tokens?.[0] ?? '';
  const tok = new TextTokenizer(readModelFolder(modelDir('tandem-large-base')));
  const [firstId] = tok.encode(first);
  const banned = await t.client.completions.create({ ...base, logit_bias: { [String(firstId)]: -100 } });
  expect(banned.choices[0]?.logprobs?.tokens?.[0]).not.toBe(first);
});

describe('completions through the openai SDK', () => {
  test('text, logprobs, echo and max_tokens 0 scoring', async () => {
    const r = await t.client.completions.create({
      model: 'tandem-large-base',
      prompt: 'In the beginning God created',
      max_tokens: 8,
      temperature: 0,
      logprobs: 3,
    });
    const c = r.choices[0];
    expect(c?.logprobs?.tokens?.length).toBe(r.usage?.completion_tokens);
    expect(c?.logprobs?.tokens?.join('')).toBe(c?.text);
    expect(Object.keys(c?.logprobs?.top_logprobs?.[0] ?? {}).length).toBeGreaterThanOrEqual(1);

    const echo = await t.client.completions.create({
      model: 'tandem-large-base',
      prompt: 'In the beginning God created',
      max_tokens: 0,
      echo: true,
      logprobs: 1,
    });
    const e = echo.choices[0];
    expect(e?.text).toBe('In the beginning God created');
    expect(e?.logprobs?.token_logprobs?.[0]).toBeNull();
    expect(e?.logprobs?.tokens?.length).toBe(echo.usage?.prompt_tokens);
    expect(echo.usage?.completion_tokens).toBe(0);
    for (const lp of e?.logprobs?.token_logprobs?.slice(1) ?? []) expect(lp).toBeLessThan(0);

    const both = await t.client.completions.create({
      model: 'tandem-large-base',
      prompt: 'In the beginning God created',
      max_tokens: 4,
      echo: true,
      temperature: 0,
    });
    expect(both.choices[0]?.text.startsWith('In the beginning God created')).toBe(true);
  });

  test('streamed completion equals the non-streamed one; several prompts give several choices', async () => {
    const body = { model: 'tandem-large-base', prompt: 'The lamp', max_tokens: 10, temperature: 0 };
    const whole = await t.client.completions.create(body);
    const s = await t.client.completions.create({ ...body, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.text ?? '';
    expect(text).toBe(whole.choices[0]?.text);
    const multi = await t.client.completions.create({ ...body, prompt: ['a', 'b'] });
    expect(multi.choices).toHaveLength(2);
  });

  test('max_tokens 0 generates nothing, streamed or not: echo returns the prompt alone, without echo it is a 400', async () => {
    const body = { model: 'tandem-large-base', prompt: 'The cat', max_tokens: 0, temperature: 0 };
    for (const stream of [false, true]) {
      const r = await post(`${t.url}/v1/completions`, { ...body, stream });
      expect(r.status).toBe(400);
      expect(r.json().error).toMatchObject({ param: 'max_tokens' });
    }
    const whole = await t.client.completions.create({ ...body, echo: true });
    expect(whole.choices[0]?.text).toBe('The cat');
    expect(whole.usage?.completion_tokens).toBe(0);
    const s = await t.client.completions.create({ ...body, echo: true, stream: true });
    let text = '';
    for await (const c of s) text += c.choices[0]?.text ?? '';
    expect(text).toBe('The cat');
  });

  test('streamed logprobs (and echo with logprobs) add up to the non-streamed ones', async () => {
    for (const extra of [{}, { echo: true }]) {
      const body = {
        model: 'tandem-large-base',
        prompt: 'The lamp',
        max_tokens: 6,
        temperature: 0,
        logprobs: 3,
        ...extra,
      };
      const res = await t.client.completions.create(body);
      const whole = res.choices[0]?.logprobs;
      const s = await t.client.completions.create({ ...body, stream: true });
      const got = {
        tokens: [] as string[],
        token_logprobs: [] as (number | null)[],
        top: [] as unknown[],
        offsets: [] as number[],
      };
      for await (const c of s) {
        const lp = c.choices[0]?.logprobs;
        if (!lp) continue;
        got.tokens.push(...(lp.tokens ?? []));
        got.token_logprobs.push(...(lp.token_logprobs ?? []));
        got.top.push(...(lp.top_logprobs ?? []));
        got.offsets.push(...(lp.text_offset ?? []));
      }
      expect(whole?.tokens?.length).toBe(6 + ('echo' in extra ? (res.usage?.prompt_tokens ?? 0) : 0));
      expect(got.tokens).toEqual(whole?.tokens);
      expect(got.offsets).toEqual(whole?.text_offset);
      expect(got.top).toEqual(whole?.top_logprobs);
      got.token_logprobs.forEach((v, i) => {
        const w = whole?.token_logprobs?.[i];
        if (w === null || v === null) expect(v).toBe(w);
        else expect(v).toBeCloseTo(w as number, 5);
      });
    }
  });
});

describe('bad input against the local provider', () => {
  test('a prompt longer than the context is a 400 naming the limit', async () => {
    const long = 'word '.repeat(2000);
    const err = await t.client.chat.completions
      .create({ model: 'tandem-chat', messages: ask(long) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).code).toBe('context_length_exceeded');
    expect((err as APIError).message).toMatch(/maximum context length is \d+ tokens/);
    const s = await post(`${t.url}/v1/chat/completions`, { model: 'tandem-chat', messages: ask(long), stream: true });
    expect(s.status).toBe(400);
    const c = await post(`${t.url}/v1/completions`, { model: 'tandem-large-base', prompt: long, max_tokens: 3 });
    expect(c.status).toBe(400);
    expect((c.json().error as { param: string }).param).toBe('prompt');
  });

  test('a required tool call or guaranteed JSON is a 400 naming the parameter; tools under auto get text', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'lookup', parameters: { type: 'object' } } }];
    const cases = [
      { tools, tool_choice: 'required' as const },
      { tools, tool_choice: { type: 'function' as const, function: { name: 'lookup' } } },
      { functions: [{ name: 'lookup', parameters: { type: 'object' } }], function_call: { name: 'lookup' } },
      { response_format: { type: 'json_object' as const } },
      {
        response_format: {
          type: 'json_schema' as const,
          json_schema: { name: 'x', schema: { type: 'object' } },
        },
      },
    ];
    for (const extra of cases) {
      const err = await t.client.chat.completions
        .create({ model: 'tandem-chat', messages: ask('hi'), ...extra })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(APIError);
      expect((err as APIError).status).toBe(400);
      expect((err as APIError).code).toBe('unsupported_parameter');
      expect((err as APIError).param).toBe(
        'tools' in extra ? 'tool_choice' : 'functions' in extra ? 'function_call' : 'response_format',
      );
      expect((err as APIError).message).toMatch(/served locally/);
    }
    const streamed = await post(`${t.url}/v1/chat/completions`, {
      model: 'tandem-chat',
      messages: ask('hi'),
      stream: true,
      response_format: { type: 'json_object' },
    });
    expect(streamed.status).toBe(400);
    for (const extra of [
      { tools },
      { tools, tool_choice: 'none' as const },
      { response_format: { type: 'text' as const } },
    ]) {
      const r = await t.client.chat.completions.create({
        model: 'tandem-chat',
        messages: ask('What is a dog?'),
        temperature: 0,
        max_tokens: 4,
        ...extra,
      });
      expect(r.choices[0]?.message.tool_calls ?? []).toEqual([]);
      expect(r.choices[0]?.message.content?.length).toBeGreaterThan(0);
    }
  });

  test('an image part is a 400 naming the part, not silently dropped; text parts are read', async () => {
    const image = { type: 'image_url' as const, image_url: { url: 'data:image/png;base64,AAAA' } };
    const err = await t.client.chat.completions
      .create({
        model: 'tandem-chat',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, image] }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).param).toBe('messages[0].content[1]');
    expect((err as APIError).code).toBe('unsupported_content');
    const parts = await t.client.chat.completions.create({
      model: 'tandem-chat',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is a dog?' }] }],
      temperature: 0,
      max_tokens: 6,
    });
    const plain = await t.client.chat.completions.create({
      model: 'tandem-chat',
      messages: ask('What is a dog?'),
      temperature: 0,
      max_tokens: 6,
    });
    expect(parts.choices[0]?.message.content).toBe(plain.choices[0]?.message.content);
    // A refusal part in an assistant turn of the history is text, read like any other.
    const history = await t.client.chat.completions.create({
      model: 'tandem-chat',
      messages: [
        { role: 'user', content: 'Tell me a secret.' },
        { role: 'assistant', content: [{ type: 'refusal', refusal: 'I cannot share that.' }] },
        { role: 'user', content: 'What is a dog?' },
      ],
      temperature: 0,
      max_tokens: 4,
    });
    expect(history.choices).toHaveLength(1);
  });

  test('more choices than the queue ever holds is a 400 (a 429 would be retried in vain)', async () => {
    const err = await t.client.chat.completions
      .create({ model: 'tandem-chat', messages: ask('hi'), n: 65, max_tokens: 1 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).param).toBe('n');
    expect((err as APIError).code).toBe('too_many_choices');
    expect((err as APIError).message).toMatch(/queues at most 64 sequences/);
    const c = await post(`${t.url}/v1/completions`, {
      model: 'tandem-large-base',
      prompt: ['a', 'b'],
      n: 33,
      max_tokens: 1,
    });
    expect(c.status).toBe(400);
    expect(c.json().error).toMatchObject({ param: 'prompt', code: 'too_many_choices' });
    const s = await post(`${t.url}/v1/chat/completions`, {
      model: 'tandem-chat',
      messages: ask('hi'),
      n: 65,
      stream: true,
    });
    expect(s.status).toBe(400);
    // Within the limit, n choices are served.
    const ok = await t.client.chat.completions.create({
      model: 'tandem-chat',
      messages: ask('hi'),
      n: 9,
      max_tokens: 2,
    });
    expect(ok.choices).toHaveLength(9);
  });

  test("a chat template that refuses the conversation is a 400 in the template's words; named templates work", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-template-'));
    try {
      cpSync(modelDir('tandem-small-chat'), dir, { recursive: true });
      const cfgPath = join(dir, 'tokenizer_config.json');
      const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as { chat_template: string };
      const original = cfg.chat_template;
      // As Gemma's template does: no system role.
      const strict = `{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}${original}`;
      // Some models list named templates; plain chat uses the one named "default".
      writeFileSync(
        cfgPath,
        JSON.stringify({
          ...cfg,
          chat_template: [
            { name: 'tool_use', template: 'unused' },
            { name: 'default', template: strict },
          ],
        }),
      );
      const listed = new TextTokenizer(readModelFolder(dir));
      const plain = new TextTokenizer(readModelFolder(modelDir('tandem-small-chat')));
      expect(listed.applyChatTemplate(ask('hi'))).toBe(plain.applyChatTemplate(ask('hi')));
      const s = await startTandem({
        upstreams: { m: { url: `local:${dir}` } },
        routes: [{ model: 'm', upstream: 'm' }],
      });
      try {
        const messages = [{ role: 'system' as const, content: 'Be brief.' }, ...ask('hi')];
        const err = await s.client.chat.completions.create({ model: 'm', messages }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(APIError);
        expect((err as APIError).status).toBe(400);
        expect((err as APIError).code).toBe('invalid_messages');
        expect((err as APIError).message).toContain('System role not supported');
        const streamed = await post(`${s.url}/v1/chat/completions`, { model: 'm', messages, stream: true });
        expect(streamed.status).toBe(400);
        const ok = await s.client.chat.completions.create({ model: 'm', messages: ask('hi'), max_tokens: 2 });
        expect(ok.choices).toHaveLength(1);
      } finally {
        await s.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an explicit max_tokens beyond the room the context leaves is a 400; the exact room, or none given, is served', async () => {
    const first = await t.client.chat.completions.create({ model: 'tandem-chat', messages: ask('hi'), max_tokens: 1 });
    const room = 256 - (first.usage?.prompt_tokens ?? 0);
    expect(readModelFolder(modelDir('tandem-large-chat')).config.max_position_embeddings).toBe(256);
    for (const key of ['max_tokens', 'max_completion_tokens'] as const) {
      const err = await t.client.chat.completions
        .create({ model: 'tandem-chat', messages: ask('hi'), [key]: room + 1 })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(APIError);
      expect((err as APIError).status).toBe(400);
      expect((err as APIError).param).toBe(key);
      expect((err as APIError).code).toBe('context_length_exceeded');
    }
    const streamed = await post(`${t.url}/v1/completions`, {
      model: 'tandem-large-base',
      prompt: 'hi',
      max_tokens: 1000,
      stream: true,
    });
    expect(streamed.status).toBe(400);
    expect(streamed.json().error).toMatchObject({ param: 'max_tokens', code: 'context_length_exceeded' });
    const exact = await t.client.chat.completions.create({
      model: 'tandem-chat',
      messages: ask('hi'),
      max_tokens: room,
    });
    expect(exact.choices).toHaveLength(1);
    const unset = await t.client.chat.completions.create({ model: 'tandem-chat', messages: ask('hi') });
    expect(unset.choices).toHaveLength(1);
  });

  test('best_of above n and a suffix are a 400 naming them, streamed or not; best_of equal to n passes', async () => {
    for (const [extra, param] of [
      [{ best_of: 3 }, 'best_of'],
      [{ suffix: ' the end.' }, 'suffix'],
    ] as const) {
      for (const stream of [false, true]) {
        const r = await post(`${t.url}/v1/completions`, {
          model: 'tandem-large-base',
          prompt: 'The lamp',
          max_tokens: 3,
          stream,
          ...extra,
        });
        expect(r.status).toBe(400);
        expect(r.json().error).toMatchObject({ param, code: 'unsupported_parameter' });
      }
    }
    const ok = await t.client.completions.create({
      model: 'tandem-large-base',
      prompt: 'The lamp',
      max_tokens: 3,
      n: 2,
      best_of: 2,
    });
    expect(ok.choices).toHaveLength(2);
  });

  test('token-id prompts outside the vocabulary are a 400', async () => {
    const r = await post(`${t.url}/v1/completions`, {
      model: 'tandem-large-base',
      prompt: [1, 2, 10_000_000],
      max_tokens: 2,
    });
    expect(r.status).toBe(400);
    expect(r.json().error).toMatchObject({ param: 'prompt', code: 'invalid_token_id' });
  });

  test('endpoints a local model cannot serve are a clear 404', async () => {
    const r = await post(`${t.url}/v1/embeddings`, { model: 'tandem-chat', input: 'x' });
    expect(r.status).toBe(404);
    expect((r.json().error as { message: string }).message).toMatch(/local model serves chat and completions only/);
  });

  test('a model nothing serves is a 404', async () => {
    const r = await post(`${t.url}/v1/chat/completions`, { model: 'tandem-huge', messages: ask('x') });
    expect(r.status).toBe(404);
  });

  test('a corrupt model file refuses to start with the file named', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tandem-corrupt-'));
    try {
      cpSync(modelDir('tandem-small-chat'), dir, { recursive: true });
      truncateSync(join(dir, 'model.onnx'), 4096);
      const loaded = loadConfig(undefined, { upstreamUrl: `local:${dir}`, port: 0 }, builtinPlugins());
      await expect(createServer(loaded, { env: {}, logStream: { write: () => {} } })).rejects.toThrow(
        /model\.onnx could not be loaded/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the stream is still sane: every SSE event parses and ends with [DONE]', async () => {
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'tandem-chat',
      messages: ask('hi'),
      stream: true,
      max_tokens: 5,
    });
    const events = sseEvents(r.text);
    expect(events.at(-1)).toBe('[DONE]');
  });
});

describe('embedded default', () => {
  test('with nothing configured, tandem-chat and the family are served in process', () => {
    const loaded = loadConfig(undefined, {}, builtinPlugins());
    const models = loaded.config.routes.map((r) => r.model);
    expect(models).toContain('tandem-chat');
    expect(models).toContain('tandem-large-base');
    expect(models).not.toContain('tandem-source-classifier');
    expect(loaded.config.upstreams['tandem-chat']?.url).toBe('local:tandem-large-chat');
  });
});
