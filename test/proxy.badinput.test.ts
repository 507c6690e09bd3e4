import { afterAll, beforeAll, expect, test } from 'vitest';
import { type FakeUpstream, startFakeUpstream } from './support/fakeUpstream.js';
import { expectErrorShape } from './support/raw.js';
import { type RunningTandem, startTandem } from './support/tandem.js';

let fake: FakeUpstream;
let t: RunningTandem;
beforeAll(async () => {
  fake = await startFakeUpstream();
  t = await startTandem({
    server: { bodyLimit: '64kb' },
    upstreams: { up: { url: fake.url } },
    routes: [{ model: '*', upstream: 'up' }],
  });
});
afterAll(async () => {
  await t.close();
  await fake.close();
});

const msgs = [{ role: 'user', content: 'hi' }];
type Case = [name: string, path: string, body: string | object, status: number, param?: string | null];
const chat = '/v1/chat/completions';
const comp = '/v1/completions';

const cases: Case[] = [
  ['truncated JSON', chat, '{"model": "m", "messages": [', 400],
  ['not JSON at all', chat, 'hello', 400],
  ['empty body', chat, '', 400],
  ['JSON null', chat, 'null', 400],
  ['JSON array', chat, '[1,2]', 400],
  ['JSON string', chat, '"text"', 400],
  ['JSON number', chat, '42', 400],
  ['trailing garbage', chat, '{"model":"m","messages":[]} x', 400],
  ['single quotes', chat, "{'model': 'm'}", 400],
  ['missing model', chat, { messages: msgs }, 400, 'model'],
  ['model is a number', chat, { model: 3, messages: msgs }, 400, 'model'],
  ['empty model', chat, { model: '', messages: msgs }, 400, 'model'],
  ['missing messages', chat, { model: 'm' }, 400, 'messages'],
  ['messages is a string', chat, { model: 'm', messages: 'hi' }, 400, 'messages'],
  ['messages empty', chat, { model: 'm', messages: [] }, 400, 'messages'],
  ['message without role', chat, { model: 'm', messages: [{ content: 'x' }] }, 400, 'messages[0].role'],
  ['unknown role', chat, { model: 'm', messages: [{ role: 'wizard', content: 'x' }] }, 400, 'messages[0].role'],
  ['content is a number', chat, { model: 'm', messages: [{ role: 'user', content: 5 }] }, 400, 'messages[0].content'],
  ['message is null', chat, { model: 'm', messages: [null] }, 400, 'messages[0]'],
  ['temperature is a string', chat, { model: 'm', messages: msgs, temperature: 'hot' }, 400, 'temperature'],
  ['temperature negative', chat, { model: 'm', messages: msgs, temperature: -1 }, 400, 'temperature'],
  ['top_p above 1', chat, { model: 'm', messages: msgs, top_p: 1.5 }, 400, 'top_p'],
  ['min_p above 1', chat, { model: 'm', messages: msgs, min_p: 1.5 }, 400, 'min_p'],
  ['top_k not an integer', chat, { model: 'm', messages: msgs, top_k: 2.5 }, 400, 'top_k'],
  ['max_tokens fractional', chat, { model: 'm', messages: msgs, max_tokens: 1.5 }, 400, 'max_tokens'],
  ['max_tokens zero on chat', chat, { model: 'm', messages: msgs, max_tokens: 0 }, 400, 'max_tokens'],
  ['n zero', chat, { model: 'm', messages: msgs, n: 0 }, 400, 'n'],
  ['stream is a string', chat, { model: 'm', messages: msgs, stream: 'yes' }, 400, 'stream'],
  ['stop is a number', chat, { model: 'm', messages: msgs, stop: 7 }, 400, 'stop'],
  [
    'top_logprobs above 20',
    chat,
    { model: 'm', messages: msgs, logprobs: true, top_logprobs: 21 },
    400,
    'top_logprobs',
  ],
  ['logprobs is a number on chat', chat, { model: 'm', messages: msgs, logprobs: 3 }, 400, 'logprobs'],
  ['tools is an object', chat, { model: 'm', messages: msgs, tools: { a: 1 } }, 400, 'tools'],
  ['tool without type', chat, { model: 'm', messages: msgs, tools: [{ function: {} }] }, 400, 'tools[0].type'],
  ['presence_penalty out of range', chat, { model: 'm', messages: msgs, presence_penalty: 9 }, 400, 'presence_penalty'],
  [
    'stream_options a string',
    chat,
    { model: 'm', messages: msgs, stream: true, stream_options: 'x' },
    400,
    'stream_options',
  ],
  ['tandem options a string', chat, { model: 'm', messages: msgs, tandem: 'x' }, 400, 'tandem'],
  ['completion without prompt', comp, { model: 'm' }, 400, 'prompt'],
  ['completion prompt is an object', comp, { model: 'm', prompt: { a: 1 } }, 400, 'prompt'],
  ['completion prompt empty array', comp, { model: 'm', prompt: [] }, 400, 'prompt'],
  ['completion logprobs above 20', comp, { model: 'm', prompt: 'x', logprobs: 50 }, 400, 'logprobs'],
  ['completion echo a string', comp, { model: 'm', prompt: 'x', echo: 'yes' }, 400, 'echo'],
  ['completion negative token id', comp, { model: 'm', prompt: [1, -2] }, 400, 'prompt'],
  ['oversize body', chat, { model: 'm', messages: [{ role: 'user', content: 'x'.repeat(70_000) }] }, 413],
  ['deeply wrong nesting', chat, { model: { name: 'm' }, messages: [[{ role: 'user' }]] }, 400],
  ['invalid UTF-8 escape', chat, '{"model":"m","messages":[{"role":"user","content":"\\ud800\\u"}]}', 400],
];

test(`a table of ${cases.length} malformed bodies, each a 4xx in OpenAI shape`, async () => {
  expect(cases.length).toBeGreaterThanOrEqual(30);
  const failures: string[] = [];
  for (const [name, path, body, status, param] of cases) {
    const res = await fetch(`${t.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text);
      expectErrorShape(json);
    } catch {
      failures.push(`${name}: body is not an OpenAI error: ${text.slice(0, 200)}`);
      continue;
    }
    if (res.status !== status) failures.push(`${name}: status ${res.status}, wanted ${status}: ${text.slice(0, 200)}`);
    const got = (json.error as { param: string | null }).param;
    if (param !== undefined && got !== param) failures.push(`${name}: param ${got}, wanted ${param}`);
    if (/\bat .+:\d+:\d+/.test(text) || text.includes('node_modules')) failures.push(`${name}: leaks a stack: ${text}`);
  }
  expect(failures).toEqual([]);
  // None of them reached the upstream, and the server is still healthy.
  expect(fake.received).toHaveLength(0);
  expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
  const ok = await t.client.chat.completions.create({
    model: 'm',
    messages: [{ role: 'user', content: 'still here' }],
  });
  expect(ok.choices[0]?.message.content).toBe('echo: still here');
});

test('a compressed body is refused with 415, not misread', async () => {
  const { gzipSync } = await import('node:zlib');
  const res = await fetch(`${t.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    body: gzipSync(JSON.stringify({ model: 'm', messages: msgs })),
  });
  expect(res.status).toBe(415);
  expectErrorShape((await res.json()) as Record<string, unknown>);
});

test('unknown paths and wrong methods get OpenAI-shaped 404s', async () => {
  for (const [method, path] of [
    ['GET', '/v1/chat/completions'],
    ['POST', '/v1/embeddingz'],
    ['DELETE', '/v1/models'],
  ] as const) {
    const res = await fetch(`${t.url}${path}`, { method });
    expect(res.status).toBe(404);
    expectErrorShape((await res.json()) as Record<string, unknown>);
  }
});

test('a client that sends half a body and hangs up does not hurt the server', async () => {
  const { connect } = await import('node:net');
  const { port } = new URL(t.url);
  await new Promise<void>((resolve) => {
    const sock = connect(Number(port), '127.0.0.1', () => {
      sock.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"model":`,
      );
      setTimeout(() => {
        sock.destroy();
        resolve();
      }, 50);
    });
  });
  expect((await fetch(`${t.url}/healthz`)).status).toBe(200);
});
