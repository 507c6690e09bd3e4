import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { APIError } from 'openai';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { evaluateDetectors, evaluationMarkdown } from '../src/plugins/privacy/evaluate.js';
import { detect, privacyPlugin } from '../src/plugins/privacy/index.js';
import { StreamRestorer, Vault } from '../src/plugins/privacy/vault.js';
import type { PluginDefinition } from '../src/plugins/types.js';
import { type FakeUpstream, startFakeUpstream } from './support/fakeUpstream.js';
import { post, sseEvents } from './support/raw.js';
import { type RunningTandem, startTandem } from './support/tandem.js';

type Json = Record<string, unknown>;
interface Check {
  id: string;
  hook: string;
  verdict: string;
  transformed: boolean;
  latency_ms: number;
  data?: Json;
}

const EMAIL = 'jane.doe@example.com';
const EMAIL2 = 'j.smith@corp.example.org';
const PHONE = '+44 20 7946 0958';
const US_PHONE = '(415) 555-2671';
const CARD = '4111 1111 1111 1111';
const IBAN = 'DE89 3704 0044 0532 0130 00';
const IPV4 = '203.0.113.42';
const IPV6 = '2001:db8::8a2e:370:7334';
const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const OPENAI_KEY = 'sk-proj-Zq8fT3kLm9Xw2Rv7Yb4Nc1Hd6Js0Pa5G';
const SSN = '123-45-6789';
const PEM = '-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7Qm\nZ2b9Q==\n-----END RSA PRIVATE KEY-----';
/** Every value a test sends: none may ever show up in a log line. */
const SENT = [EMAIL, EMAIL2, PHONE, US_PHONE, CARD, IBAN, IPV4, IPV6, AWS_KEY, OPENAI_KEY, SSN, 'MIIEowIBAAKCAQEAx7Qm'];

/**
 * A tiny OpenAI-compatible upstream on 127.0.0.1 that answers with scripted pieces: each piece is one SSE chunk, so
 * a placeholder can be cut anywhere ("[EMA" + "IL_1]"). Non-streamed, it answers the pieces joined.
 */
interface Script {
  pieces: string[];
  /** Send a finish chunk (finish_reason) at the end; false = the stream just stops. */
  finish?: boolean;
  /** Pieces are tool-call argument fragments instead of content. */
  tool?: boolean;
}
interface SplitUpstream {
  url: string;
  script: Script;
  received: Json[];
  close(): Promise<void>;
}

async function startSplitUpstream(): Promise<SplitUpstream> {
  const state: SplitUpstream = { url: '', script: { pieces: [] }, received: [], close: async () => {} };
  const server: Server = createServer(async (req, res) => {
    let raw = '';
    for await (const c of req) raw += c;
    const body = JSON.parse(raw) as Json;
    state.received.push(body);
    const chat = (req.url ?? '').endsWith('/chat/completions');
    const { pieces, finish = true, tool = false } = state.script;
    const base = { id: 'split-1', created: 1700000000, model: String(body.model) };
    if (body.stream !== true) {
      const text = pieces.join('');
      const call = { id: 'call_1', type: 'function', function: { name: 'send', arguments: text } };
      const choice = chat
        ? {
            index: 0,
            message: { role: 'assistant', content: tool ? null : text, ...(tool && { tool_calls: [call] }) },
            finish_reason: tool ? 'tool_calls' : 'stop',
          }
        : { index: 0, text, logprobs: null, finish_reason: 'stop' };
      const s = JSON.stringify({ ...base, object: chat ? 'chat.completion' : 'text_completion', choices: [choice] });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
      return res.end(s);
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const send = async (choice: Json) => {
      res.write(`data: ${JSON.stringify({ ...base, object, choices: [choice] })}\n\n`);
      // Each piece leaves in its own network write.
      await new Promise((r) => setTimeout(r, 3));
    };
    if (chat) await send({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null });
    for (const [i, p] of pieces.entries()) {
      if (!chat) await send({ index: 0, text: p, logprobs: null, finish_reason: null });
      else if (!tool) await send({ index: 0, delta: { content: p }, finish_reason: null });
      else {
        const head = i === 0 ? { id: 'call_1', type: 'function', function: { name: 'send', arguments: p } } : {};
        await send({
          index: 0,
          delta: { tool_calls: [{ index: 0, ...head, ...(i > 0 && { function: { arguments: p } }) }] },
          finish_reason: null,
        });
      }
    }
    if (finish)
      await send(
        chat
          ? { index: 0, delta: {}, finish_reason: tool ? 'tool_calls' : 'stop' }
          : { index: 0, text: '', logprobs: null, finish_reason: 'stop' },
      );
    res.end('data: [DONE]\n\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  state.close = () =>
    new Promise((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}

let fake: FakeUpstream;
let split: SplitUpstream;
let t: RunningTandem;

beforeAll(async () => {
  fake = await startFakeUpstream();
  split = await startSplitUpstream();
  const privacy = (config: Json = {}, extra: Json = {}) => [{ use: 'privacy', config, ...extra }];
  t = await startTandem(
    {
      logging: { level: 'trace' },
      upstreams: { fake: { url: fake.url, maxRetries: 0 }, split: { url: split.url, maxRetries: 0 } },
      routes: [
        { model: 'split-*', upstream: 'split', plugins: privacy() },
        {
          model: 'block-*',
          upstream: 'fake',
          plugins: privacy({ detectors: { email: { action: 'block' }, secret: { action: 'block' } } }),
        },
        {
          model: 'flag-*',
          upstream: 'fake',
          plugins: privacy({ detectors: { ssn: { action: 'flag' }, phone: { action: 'off' } } }),
        },
        {
          model: 'custom-*',
          upstream: 'fake',
          plugins: privacy({ placeholder: '<<{TYPE}-{N}>>', roles: ['user'], lastMessageOnly: true }),
        },
        { model: 'norestore-*', upstream: 'fake', plugins: privacy({ restore: false }) },
        { model: 'slowclosed-*', upstream: 'fake', plugins: privacy({}, { timeoutMs: 1 }) },
        { model: 'slowopen-*', upstream: 'fake', plugins: privacy({}, { timeoutMs: 1, failMode: 'open' }) },
        { model: '*', upstream: 'fake', plugins: privacy() },
      ],
    },
    { plugins: [privacyPlugin as PluginDefinition] },
  );
});
afterAll(async () => {
  await t?.close();
  await fake?.close();
  await split?.close();
});

const lastFake = () => fake.received.at(-1)?.body as Json;
const userText = (body: Json) => ((body.messages as Json[]).at(-1) as Json).content as string;
const checksOf = (body: unknown) => ((body as { tandem: { checks: Check[] } }).tandem?.checks ?? []) as Check[];

async function streamDeltas(model: string, content: string): Promise<{ deltas: string[]; chunks: Json[] }> {
  const stream = await t.client.chat.completions.create({
    model,
    messages: [{ role: 'user', content }],
    stream: true,
  });
  const deltas: string[] = [];
  const chunks: Json[] = [];
  for await (const c of stream) {
    chunks.push(c as unknown as Json);
    const d = c.choices[0]?.delta?.content;
    if (d) deltas.push(d);
  }
  return { deltas, chunks };
}

describe('request redaction and restore', () => {
  test('no PII reaches the upstream; the answer comes back restored; checks carry counts only', async () => {
    const prompt = `Email ${EMAIL}, call ${PHONE}, card ${CARD}, IBAN ${IBAN}, server ${IPV4}, key ${AWS_KEY}, SSN ${SSN}.`;
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'gpt-x',
      messages: [{ role: 'user', content: prompt }],
    });
    expect(r.status).toBe(200);
    expect(userText(lastFake())).toBe(
      'Email [EMAIL_1], call [PHONE_1], card [CREDIT_CARD_1], IBAN [IBAN_1], server [IP_1], key [SECRET_1], SSN [SSN_1].',
    );
    const upstreamJson = JSON.stringify(lastFake());
    for (const v of [EMAIL, PHONE, CARD, IBAN, IPV4, AWS_KEY, SSN]) expect(upstreamJson).not.toContain(v);

    const j = r.json();
    expect((j.choices as { message: { content: string } }[])[0]?.message.content).toBe(`echo: ${prompt}`);
    const checks = checksOf(j);
    expect(checks.find((c) => c.id === 'privacy.email')).toMatchObject({
      hook: 'request',
      verdict: 'pass',
      transformed: true,
      data: { action: 'redact', count: 1, categories: { email: 1 } },
    });
    expect(checks.find((c) => c.id === 'privacy.secret')?.data).toEqual({
      action: 'redact',
      count: 1,
      categories: { aws_access_key: 1 },
    });
    expect(checks.find((c) => c.id === 'privacy.restore')).toMatchObject({
      hook: 'response',
      data: { restored: 7 },
    });
    // Reports say how many, never what.
    const reported = JSON.stringify(checks) + (r.headers.get('x-tandem-checks') ?? '');
    for (const v of [EMAIL, PHONE, CARD, IBAN, IPV4, AWS_KEY, SSN, '[EMAIL_1]']) expect(reported).not.toContain(v);
    expect(r.headers.get('x-tandem-checks')).toContain('privacy.email@request=pass');
  });

  test('same value, same placeholder; other values, other numbers; every role, text parts, tool-call arguments', async () => {
    const body = {
      model: 'gpt-x',
      messages: [
        { role: 'system', content: `Support mail is ${EMAIL}.` },
        { role: 'user', content: [{ type: 'text', text: `I am ${EMAIL2}, cc ${EMAIL}` }] },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'dial', arguments: JSON.stringify({ to: US_PHONE }) } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: `dialled ${US_PHONE} from ${IPV6}` },
        { role: 'user', content: `again: ${EMAIL2}` },
        // The deprecated single function call.
        { role: 'assistant', content: null, function_call: { name: 'mail', arguments: JSON.stringify({ to: EMAIL }) } },
        { role: 'function', name: 'mail', content: 'sent' },
        { role: 'user', content: `again: ${EMAIL2}` },
      ],
    };
    const r = await post(`${t.url}/v1/chat/completions`, body);
    expect(r.status).toBe(200);
    const sent = lastFake().messages as Json[];
    expect(sent[0]?.content).toBe('Support mail is [EMAIL_1].');
    expect(sent[1]?.content).toEqual([{ type: 'text', text: 'I am [EMAIL_2], cc [EMAIL_1]' }]);
    expect(sent[2]?.tool_calls).toMatchObject([{ function: { arguments: '{"to":"[PHONE_1]"}' } }]);
    expect(sent[3]?.content).toBe('dialled [PHONE_1] from [IP_1]');
    expect(sent[4]?.content).toBe('again: [EMAIL_2]');
    expect(sent[5]?.function_call).toMatchObject({ arguments: '{"to":"[EMAIL_1]"}' });
    expect((r.json().choices as { message: { content: string } }[])[0]?.message.content).toBe(`echo: again: ${EMAIL2}`);
  });

  test('a placeholder the client wrote itself is neither assigned nor restored', async () => {
    const r = await t.client.chat.completions.create({
      model: 'gpt-x',
      messages: [{ role: 'user', content: `the literal [EMAIL_1] and the real ${EMAIL}` }],
    });
    expect(userText(lastFake())).toBe('the literal [EMAIL_1] and the real [EMAIL_2]');
    expect(r.choices[0]?.message.content).toBe(`echo: the literal [EMAIL_1] and the real ${EMAIL}`);
  });

  test('nothing found: one pass check, the body goes upstream untouched', async () => {
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'gpt-x',
      messages: [{ role: 'user', content: 'meet on 2024-05-17 at 12:30, order 1234567890, v1.2.3' }],
    });
    expect(userText(lastFake())).toBe('meet on 2024-05-17 at 12:30, order 1234567890, v1.2.3');
    expect(checksOf(r.json()).map((c) => [c.id, c.verdict, c.data])).toEqual([['privacy.scan', 'pass', { found: 0 }]]);
  });

  test('/v1/completions: prompt strings, prompt arrays and suffix, streamed and not', async () => {
    const r = await t.client.completions.create({ model: 'gpt-x', prompt: `write to ${EMAIL} about ${IBAN}` });
    expect(lastFake().prompt).toBe('write to [EMAIL_1] about [IBAN_1]');
    expect(r.choices[0]?.text).toBe(`echo: write to ${EMAIL} about ${IBAN}`);

    await post(`${t.url}/v1/completions`, { model: 'gpt-x', prompt: [`a ${SSN}`, `b ${SSN}`], suffix: `c ${IPV4}` });
    expect(lastFake().prompt).toEqual(['a [SSN_1]', 'b [SSN_1]']);
    expect(lastFake().suffix).toBe('c [IP_1]');

    const stream = await t.client.completions.create({
      model: 'gpt-x',
      prompt: `ping ${IPV4} and ${IPV6} now`,
      stream: true,
    });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.text ?? '';
    expect(lastFake().prompt).toBe('ping [IP_1] and [IP_2] now');
    expect(text).toBe(`echo: ping ${IPV4} and ${IPV6} now`);
  });

  test('restore: false leaves the placeholders in the answer', async () => {
    const r = await t.client.chat.completions.create({
      model: 'norestore-x',
      messages: [{ role: 'user', content: `mail ${EMAIL}` }],
    });
    expect(r.choices[0]?.message.content).toBe('echo: mail [EMAIL_1]');
  });

  test('custom placeholder format; only user roles; only the last message', async () => {
    const r = await t.client.chat.completions.create({
      model: 'custom-x',
      messages: [
        { role: 'system', content: `admin is ${EMAIL}` },
        { role: 'user', content: `earlier ${EMAIL}` },
        { role: 'user', content: `now ${EMAIL2} and ${CARD}` },
      ],
    });
    const sent = lastFake().messages as Json[];
    expect(sent[0]?.content).toBe(`admin is ${EMAIL}`);
    expect(sent[1]?.content).toBe(`earlier ${EMAIL}`);
    expect(sent[2]?.content).toBe('now <<EMAIL-1>> and <<CREDIT_CARD-1>>');
    expect(r.choices[0]?.message.content).toBe(`echo: now ${EMAIL2} and ${CARD}`);
  });

  test('different values never share a cached answer; the same values do', async () => {
    const ask = (email: string) =>
      post(`${t.url}/v1/chat/completions`, {
        model: 'gpt-x',
        temperature: 0,
        messages: [{ role: 'user', content: `cache me ${email}` }],
      });
    const content = (r: Awaited<ReturnType<typeof ask>>) =>
      (r.json().choices as { message: { content: string } }[])[0]?.message.content;
    const a = await ask(EMAIL);
    const b = await ask(EMAIL2);
    const a2 = await ask(EMAIL);
    // Both went upstream as "cache me [EMAIL_1]", yet each gets its own address back.
    expect(content(a)).toBe(`echo: cache me ${EMAIL}`);
    expect(content(b)).toBe(`echo: cache me ${EMAIL2}`);
    expect(b.headers.get('x-tandem-cache')).toBe('miss');
    expect(content(a2)).toBe(`echo: cache me ${EMAIL}`);
    expect(a2.headers.get('x-tandem-cache')).toBe('hit');
  });
});

describe('streaming restore', () => {
  test('word-by-word echo through the fake upstream', async () => {
    const prompt = `reach ${EMAIL} or ${US_PHONE}, pay to ${IBAN}`;
    const { deltas, chunks } = await streamDeltas('gpt-x', prompt);
    expect(userText(lastFake())).toBe('reach [EMAIL_1] or [PHONE_1], pay to [IBAN_1]');
    expect(deltas.join('')).toBe(`echo: ${prompt}`);
    const tail = chunks.at(-1) as { tandem: { checks: Check[] } };
    expect(tail.tandem.checks.find((c) => c.id === 'privacy.restore')).toMatchObject({
      hook: 'stream',
      transformed: true,
      data: { restored: 3 },
    });
  });

  test('a placeholder split across chunks comes out whole; only a possible prefix is held back', async () => {
    split.script = { pieces: ['Mail ', '[EMA', 'IL_1] now', ' or [', 'PHONE_', '1]', '!'] };
    const { deltas, chunks } = await streamDeltas('split-x', `mail ${EMAIL} or call ${US_PHONE}`);
    expect(userText(split.received.at(-1) as Json)).toBe('mail [EMAIL_1] or call [PHONE_1]');
    // "[EMA" and "[PHONE_" are held (their chunks dropped), everything else leaves at once.
    expect(deltas).toEqual(['Mail ', `${EMAIL} now`, ' or ', US_PHONE, '!']);
    // The role chunk and the finish chunk are kept.
    expect(chunks[0]).toMatchObject({ object: 'chat.completion.chunk', choices: [{ delta: { role: 'assistant' } }] });
    expect(chunks.some((c) => (c.choices as Json[])[0]?.finish_reason === 'stop')).toBe(true);
  });

  test('held text leaves with the finish chunk, or at the end of a stream that just stops', async () => {
    split.script = { pieces: ['to [EMA', 'IL_'] };
    expect((await streamDeltas('split-x', `x ${EMAIL}`)).deltas).toEqual(['to ', '[EMAIL_']);

    split.script = { pieces: ['to [EMAIL_1', '] and [EMA'], finish: false };
    const raw = await post(`${t.url}/v1/chat/completions`, {
      model: 'split-x',
      stream: true,
      messages: [{ role: 'user', content: `x ${EMAIL}` }],
    });
    const events = sseEvents(raw.text).filter((e): e is Json => e !== '[DONE]');
    const contents = events.map((e) => ((e.choices as Json[])[0]?.delta as Json | undefined)?.content);
    expect(contents.filter(Boolean)).toEqual(['to ', `${EMAIL} and `, '[EMA']);
    // The flushed chunk is a well-formed chunk of the same stream.
    const flushed = events.find((e) => ((e.choices as Json[])[0]?.delta as Json | undefined)?.content === '[EMA');
    expect(flushed).toMatchObject({ id: 'split-1', object: 'chat.completion.chunk', model: 'split-x' });
  });

  test('an invented placeholder stays as it is, streamed and not', async () => {
    split.script = { pieces: ['[EMAIL_9] is not ', '[EMAIL_', '1]', ' [SSN_1]'] };
    expect((await streamDeltas('split-x', `x ${EMAIL}`)).deltas.join('')).toBe(`[EMAIL_9] is not ${EMAIL} [SSN_1]`);
    const r = await t.client.chat.completions.create({
      model: 'split-x',
      messages: [{ role: 'user', content: `x ${EMAIL}` }],
    });
    expect(r.choices[0]?.message.content).toBe(`[EMAIL_9] is not ${EMAIL} [SSN_1]`);
  });

  test('any cut of an answer into chunks restores the same text; only a possible prefix is ever held', () => {
    for (const format of ['[{TYPE}_{N}]', '<<{TYPE}-{N}>>']) {
      const vault = new Vault(format, [`${format.replace('{TYPE}', 'EMAIL').replace('{N}', '2')} literal`]);
      const p = (label: string, value: string) => vault.placeholder(label, value);
      const answer = [
        `Hi ${p('EMAIL', EMAIL)}, card ${p('CREDIT_CARD', CARD)}`,
        ` ip ${p('IP', IPV4)}${p('IP', IPV6)} again ${p('EMAIL', EMAIL)} [EMAIL_7] <<EMAIL-7>> [`,
        ` ${p('EMAIL', EMAIL2)} end [EMAIL_ <<EMAIL-`,
      ].join('');
      const whole = vault.restore(answer).text;
      expect(whole).toContain(`Hi ${EMAIL}, card ${CARD} ip ${IPV4}${IPV6} again ${EMAIL}`);
      const longest = Math.max(...[...vault.originals.keys()].map((k) => k.length));
      const check = (cuts: number[]) => {
        const r = new StreamRestorer(vault);
        let out = '';
        let fed = 0;
        for (const end of [...cuts, answer.length]) {
          out += r.push(answer.slice(fed, end));
          fed = end;
          // What is held back is short: never more than a placeholder minus its last character.
          expect(vault.restore(answer.slice(0, fed)).text.length - out.length).toBeLessThan(longest);
        }
        expect(out + r.flush()).toBe(whole);
      };
      for (let i = 0; i <= answer.length; i++) check([i]);
      for (let i = 0; i + 3 <= answer.length; i++) check([i, i + 1, i + 3]);
      check(Array.from({ length: answer.length }, (_, i) => i));
    }
  });

  test('thousands of placeholders: restore and hold-back stay fast', () => {
    const vault = new Vault('[{TYPE}_{N}]', []);
    const parts: string[] = [];
    for (let i = 0; i < 20_000; i++) parts.push(vault.placeholder('EMAIL', `user${i}@example.com`));
    const answer = parts.join(' ');
    const t0 = performance.now();
    const r = new StreamRestorer(vault);
    let out = '';
    for (let i = 0; i < answer.length; i += 5) out += r.push(answer.slice(i, i + 5));
    out += r.flush();
    expect(out).toBe(Array.from({ length: 20_000 }, (_, i) => `user${i}@example.com`).join(' '));
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  test('completions streams split mid-placeholder', async () => {
    split.script = { pieces: ['IP [I', 'P_1', '] ok'] };
    const stream = await t.client.completions.create({ model: 'split-x', prompt: `host ${IPV4}`, stream: true });
    const texts: string[] = [];
    for await (const c of stream) if (c.choices[0]?.text) texts.push(c.choices[0].text);
    expect(texts).toEqual(['IP ', `${IPV4} ok`]);
  });

  test('tool-call arguments are restored (JSON-escaped), streamed and not', async () => {
    // A PEM key has newlines: inside JSON arguments they must come back escaped.
    split.script = { pieces: ['{"to":"[EMA', 'IL_1]","key":"[SECRET', '_1]"}'], tool: true };
    const content = `send my key ${PEM} to ${EMAIL}`;
    const stream = await t.client.chat.completions.create({
      model: 'split-x',
      messages: [{ role: 'user', content }],
      stream: true,
    });
    let args = '';
    for await (const c of stream)
      for (const tc of c.choices[0]?.delta?.tool_calls ?? []) args += tc.function?.arguments ?? '';
    expect(userText(split.received.at(-1) as Json)).toBe('send my key [SECRET_1] to [EMAIL_1]');
    expect(JSON.parse(args)).toEqual({ to: EMAIL, key: PEM });

    const r = await t.client.chat.completions.create({ model: 'split-x', messages: [{ role: 'user', content }] });
    const call = r.choices[0]?.message.tool_calls?.[0] as { function: { arguments: string } } | undefined;
    expect(JSON.parse(call?.function.arguments ?? '')).toEqual({ to: EMAIL, key: PEM });
  });
});

describe('policies', () => {
  test('block: 400 guardrail_blocked naming privacy.<check> and the category; nothing goes upstream', async () => {
    const before = fake.received.length;
    const err = await t.client.chat.completions
      .create({ model: 'block-x', messages: [{ role: 'user', content: `mail ${EMAIL}` }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(400);
    expect((err as APIError).type).toBe('guardrail_blocked');
    expect((err as APIError).message).toContain('privacy.email');
    expect((err as APIError).message).toContain('"email":1');
    expect((err as APIError).message).not.toContain(EMAIL);

    const raw = await post(`${t.url}/v1/chat/completions`, {
      model: 'block-x',
      stream: true,
      messages: [{ role: 'user', content: `key ${OPENAI_KEY} and phone ${PHONE}` }],
    });
    expect(raw.status).toBe(400);
    const e = raw.json().error as { message: string; type: string };
    expect(e.type).toBe('guardrail_blocked');
    expect(e.message).toMatch(/privacy\.secret.*openai_key/);
    expect(e.message).not.toContain(OPENAI_KEY);
    expect(fake.received.length).toBe(before);

    // Detectors on redact still redact on the same route.
    await t.client.chat.completions.create({
      model: 'block-x',
      messages: [{ role: 'user', content: `call ${PHONE}` }],
    });
    expect(userText(lastFake())).toBe('call [PHONE_1]');
  });

  test('flag: reported in tandem.checks, the value goes through; off: not even looked at', async () => {
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'flag-x',
      messages: [{ role: 'user', content: `ssn ${SSN}, phone ${PHONE}, mail ${EMAIL}` }],
    });
    expect(r.status).toBe(200);
    expect(userText(lastFake())).toBe(`ssn ${SSN}, phone ${PHONE}, mail [EMAIL_1]`);
    const checks = checksOf(r.json());
    expect(checks.find((c) => c.id === 'privacy.ssn')).toMatchObject({
      verdict: 'flag',
      transformed: false,
      data: { action: 'flag', count: 1, categories: { ssn: 1 } },
    });
    expect(checks.some((c) => c.id === 'privacy.phone')).toBe(false);
    expect(r.headers.get('x-tandem-checks')).toContain('privacy.ssn@request=flag');
    expect((r.json().choices as { message: { content: string } }[])[0]?.message.content).toBe(
      `echo: ssn ${SSN}, phone ${PHONE}, mail ${EMAIL}`,
    );
  });

  test('a scan out of time fails closed by default (blocked), or open when configured (unredacted, reported)', async () => {
    // 10 texts of 300 KB: the scan yields between them, so a 1 ms timeout fires part-way.
    const filler = 'The quick brown fox jumps over the lazy dog. '.repeat(6700);
    const messages = Array.from({ length: 10 }, (_, i) => ({ role: 'user', content: `${filler} text ${i}: ${EMAIL}` }));
    const before = fake.received.length;
    const closed = await post(`${t.url}/v1/chat/completions`, { model: 'slowclosed-x', messages });
    expect(closed.status).toBe(400);
    const e = closed.json().error as { type: string; message: string };
    expect(e.type).toBe('guardrail_blocked');
    expect(e.message).toMatch(/privacy\.error.*timed out after 1 ms.*fail-closed/);
    expect(fake.received.length).toBe(before);

    const open = await post(`${t.url}/v1/chat/completions`, { model: 'slowopen-x', messages });
    expect(open.status).toBe(200);
    expect(checksOf(open.json())).toEqual([
      expect.objectContaining({ id: 'privacy.error', verdict: 'pass', error: expect.stringContaining('fail-open') }),
    ]);
    // Fail-open is exactly that: the text went upstream as the client sent it.
    expect(userText(lastFake())).toContain(EMAIL);
  });

  test('the config is strict and checked', () => {
    const parse = (c: unknown) => privacyPlugin.configSchema.safeParse(c);
    expect(parse({}).success).toBe(true);
    const d = privacyPlugin.configSchema.parse({});
    expect(d.detectors.email.action).toBe('redact');
    expect(d.restore).toBe(true);
    expect(d.placeholder).toBe('[{TYPE}_{N}]');
    expect(parse({ detectors: { email: { action: 'mask' } } }).success).toBe(false);
    expect(parse({ detectors: { passport: { action: 'block' } } }).success).toBe(false);
    expect(parse({ unknown: 1 }).success).toBe(false);
    expect(parse({ placeholder: '{TYPE}{N}' }).success).toBe(false);
    expect(parse({ placeholder: '"{TYPE}_{N}"' }).success).toBe(false);
    expect(privacyPlugin.defaultFailMode).toBe('closed');
  });
});

describe('detectors', () => {
  const found = (text: string) => detect(text).map((f) => [f.detector, text.slice(f.start, f.end)]);

  test('credit cards: Luhn-valid, major networks, sensible grouping', () => {
    expect(found('4111 1111 1111 1111 / 4111-1111-1111-1111 / 5500005555555559 / 3782 822463 10005')).toEqual([
      ['credit_card', '4111 1111 1111 1111'],
      ['credit_card', '4111-1111-1111-1111'],
      ['credit_card', '5500005555555559'],
      ['credit_card', '3782 822463 10005'],
    ]);
    // Luhn fails; mixed separators; a number from outside the card networks; digits glued to more digits.
    expect(found('4111 1111 1111 1112, 4111-1111 1111-1111, 9111111111111113, 41111111111111110')).toEqual([]);
    // A CVV after the number is not part of it.
    expect(found('card 4111 1111 1111 1111 123')).toEqual([['credit_card', '4111 1111 1111 1111']]);
  });

  test('IBANs: country length and mod-97', () => {
    expect(found('DE89 3704 0044 0532 0130 00, GB82WEST12345698765432, gb82west12345698765432.')).toEqual([
      ['iban', 'DE89 3704 0044 0532 0130 00'],
      ['iban', 'GB82WEST12345698765432'],
      ['iban', 'gb82west12345698765432'],
    ]);
    // Wrong check digits, wrong length for the country, unknown country.
    expect(
      found('DE88 3704 0044 0532 0130 00, DE89370400440532013, ZZ89370400440532013000').map((f) => f[0]),
    ).not.toContain('iban');
  });

  test('SSNs: never-issued ranges excluded; bare digits need a word saying so', () => {
    expect(found(`${SSN} and 321 54 9876`)).toEqual([
      ['ssn', SSN],
      ['ssn', '321 54 9876'],
    ]);
    expect(found('000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000')).toEqual([]);
    expect(found('SSN: 123456789')).toEqual([['ssn', '123456789']]);
    expect(found('ticket 123456789')).toEqual([]);
  });

  test('IPs: octet range, no leading zeros, no version strings; IPv6 parsed', () => {
    expect(found(`${IPV4} 256.1.1.1 01.2.3.4 v1.2.3.4 1.2.3.4.5 ${IPV6} fe80::1 12:30:45 std::vector`)).toEqual([
      ['ip', IPV4],
      ['ip', IPV6],
      ['ip', 'fe80::1'],
    ]);
  });

  test('phones: international and North American formats, not dates or plain numbers', () => {
    expect(found(`${PHONE}; ${US_PHONE}; 415.555.2671; 1-415-555-2671; +14155552671; 0049 30 1234567`)).toEqual([
      ['phone', PHONE],
      ['phone', US_PHONE],
      ['phone', '415.555.2671'],
      ['phone', '1-415-555-2671'],
      ['phone', '+14155552671'],
      ['phone', '0049 30 1234567'],
    ]);
    expect(found('2024-05-17, 17.05.2024, 4155552671, 415-555.2671, 12:30, $1,234,567.89, 94105-1234')).toEqual([]);
  });

  test('secrets: known token formats, JWTs, PEM blocks, key=value assignments', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
    const text = [
      OPENAI_KEY,
      AWS_KEY,
      'ghp_abcdefghijklmnopqrstuvwxyz0123456789',
      'xoxb-123456789012-abcdefghijKL',
      'AIzaSyA1234567890abcdefghijklmnopqrstuv',
      jwt,
      PEM,
      'api_key=abc123xyz789',
      '"password": "hunter2!"',
      '(password: s3cr3tpass).',
      'password: required',
      'token=<your token>',
      'sk-learn-pipeline',
    ].join('\n');
    expect(detect(text).map((f) => [f.kind, text.slice(f.start, f.end)])).toEqual([
      ['openai_key', OPENAI_KEY],
      ['aws_access_key', AWS_KEY],
      ['github_token', 'ghp_abcdefghijklmnopqrstuvwxyz0123456789'],
      ['slack_token', 'xoxb-123456789012-abcdefghijKL'],
      ['google_api_key', 'AIzaSyA1234567890abcdefghijklmnopqrstuv'],
      ['jwt', jwt],
      ['private_key', PEM],
      ['credential', 'abc123xyz789'],
      ['credential', 'hunter2!'],
      ['credential', 's3cr3tpass'],
    ]);
  });

  test('emails', () => {
    expect(found(`${EMAIL}. <${EMAIL2}> a@b x@y.c user@[192.0.2.1]`)).toEqual([
      ['email', EMAIL],
      ['email', EMAIL2],
      ['email', 'user@[192.0.2.1]'],
    ]);
  });

  test('overlapping detections resolve to one', () => {
    // Digits in an IBAN that also read as a phone number; an IPv4 tail inside an IPv6 address; a card number as
    // the value of a password assignment.
    expect(found('GB33BUKB20201555555555 and DE44 5001 0517 5407 3249 31')).toEqual([
      ['iban', 'GB33BUKB20201555555555'],
      ['iban', 'DE44 5001 0517 5407 3249 31'],
    ]);
    expect(found('::ffff:192.0.2.1')).toEqual([['ip', '::ffff:192.0.2.1']]);
    expect(found('password=4111111111111111')).toEqual([['secret', '4111111111111111']]);
  });

  test('a megabyte of hostile or binary-looking text is scanned in well under a second', () => {
    const MB = 1 << 20;
    const inputs: Record<string, string> = {
      letters: 'a'.repeat(MB),
      digits: '1'.repeat(MB),
      digitsAndSpaces: '1 '.repeat(MB / 2),
      cardGroups: '4111 '.repeat(MB / 5),
      ibanHeads: 'DE89 '.repeat(MB / 5),
      ats: 'a@'.repeat(MB / 2),
      dots: '1.'.repeat(MB / 2),
      colons: 'a:'.repeat(MB / 2),
      plus: '+1 '.repeat(MB / 3),
      placeholders: '[EMAIL_'.repeat(MB / 7),
      pemHeads: '-----BEGIN PRIVATE KEY-----\n'.repeat(MB / 28),
      assignments: 'password=password='.repeat(MB / 18),
      binary: Array.from({ length: MB }, (_, i) => String.fromCharCode((i * 2654435761) % 256)).join(''),
      emails: `${EMAIL} `.repeat(MB / 21),
    };
    const times: Record<string, number> = {};
    for (const [name, text] of Object.entries(inputs)) {
      const t0 = performance.now();
      detect(text);
      times[name] = Math.round(performance.now() - t0);
    }
    console.log('privacy: ms per MB', times);
    // Typically 20-300 ms on a loaded 2-core machine; the bound leaves room for a busy CI.
    for (const ms of Object.values(times)) expect(ms).toBeLessThan(750);
  });

  test('a 1 MB prompt through Tandem', async () => {
    const filler = 'The quick brown fox jumps over the lazy dog. '.repeat(MB_FILL);
    const prompt = `${filler}mail ${EMAIL} ${filler}card ${CARD} ${filler}`;
    const t0 = performance.now();
    const r = await post(`${t.url}/v1/chat/completions`, {
      model: 'gpt-x',
      messages: [{ role: 'user', content: prompt }],
    });
    const ms = performance.now() - t0;
    expect(r.status).toBe(200);
    const sent = userText(lastFake());
    expect(sent.length).toBeGreaterThan(1_000_000);
    expect(sent).not.toContain(EMAIL);
    expect(sent).toContain('mail [EMAIL_1] ');
    expect((r.json().choices as { message: { content: string } }[])[0]?.message.content).toBe(`echo: ${prompt}`);
    const request = checksOf(r.json()).filter((c) => c.hook === 'request');
    const latency = Math.max(...request.map((c) => c.latency_ms));
    console.log(`privacy: 1 MB prompt, request hook ${latency} ms, round trip ${Math.round(ms)} ms`);
    expect(latency).toBeLessThan(500);
    // One outcome per detector that found something, each with its own scan time (not the hook's, twice).
    expect(request.map((c) => c.id).sort()).toEqual(['privacy.credit_card', 'privacy.email']);
    expect(request[0]?.latency_ms).not.toBe(request[1]?.latency_ms);
  });
});
const MB_FILL = Math.ceil((1 << 20) / 3 / 45);

describe('evaluation', () => {
  test('precision and recall on the synthetic labelled corpus; the README carries this very table', () => {
    const scores = evaluateDetectors();
    const table = evaluationMarkdown(scores);
    console.log(table);
    for (const s of scores) {
      expect(s.labelled).toBeGreaterThan(50);
      expect(s.precision).toBeGreaterThan(0.8);
      expect(s.recall).toBeGreaterThan(0.7);
    }
    expect(scores.find((s) => s.detector === 'iban')).toMatchObject({ precision: 1, recall: 1 });
    const readme = readFileSync(new URL('../src/plugins/privacy/README.md', import.meta.url), 'utf8');
    expect(readme).toContain(table);
  });
});

describe('logs', () => {
  test('neither the values nor the mapping ever reach the server log', () => {
    expect(t.logs.length).toBeGreaterThan(10);
    const all = t.logs.join('\n');
    for (const v of SENT) expect(all).not.toContain(v);
    expect(all).not.toMatch(/\[(EMAIL|PHONE|CREDIT_CARD|IBAN|IP|SECRET|SSN)_\d+\]/);
  });
});
