import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A real HTTP server on 127.0.0.1 speaking the OpenAI wire format (JSON, SSE, errors), for tests and benchmarks.
 * Answers are deterministic: the reply echoes the last user message, so a test can tell what reached the upstream.
 * Scripted faults are queued with `enqueue` and consumed one per request.
 */
export type Fault =
  | { status: number; body?: unknown; headers?: Record<string, string> }
  | { delayMs: number }
  | { malformedJson: true }
  | { resetAfterChunks: number }
  | { hang: true }
  | { errorEventAfterChunks: number };

export interface Received {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
  aborted: boolean;
}

export interface FakeUpstream {
  url: string;
  received: Received[];
  enqueue(...faults: Fault[]): void;
  /** Resolves once `n` requests have been received. */
  waitFor(n: number): Promise<void>;
  close(): Promise<void>;
}

const words = (s: string) => s.split(/(?<=\s)/).filter(Boolean);

function lastUserText(body: Record<string, unknown>): string {
  if (Array.isArray(body.messages)) {
    const users = body.messages.filter((m) => (m as { role?: string }).role === 'user');
    const c = (users.at(-1) as { content?: unknown } | undefined)?.content;
    return typeof c === 'string' ? c : JSON.stringify(c ?? '');
  }
  return typeof body.prompt === 'string' ? body.prompt : JSON.stringify(body.prompt ?? '');
}

function logprobsFor(tokens: string[], top: number) {
  return {
    content: tokens.map((t, i) => ({
      token: t,
      logprob: -0.1 * (i + 1),
      bytes: [...Buffer.from(t)],
      top_logprobs: Array.from({ length: top }, (_, k) => ({
        token: k === 0 ? t : `alt${k}`,
        logprob: -0.1 * (i + 1) - k,
        bytes: null,
      })),
    })),
  };
}

export interface FakeOptions {
  /** Delay between streamed chunks. */
  chunkDelayMs?: number;
  /** Fixed reply instead of the echo. */
  reply?: string;
  /**
   * Completions with a token-id prompt and `logprobs: k` answer as a synthetic language model would, with tokens
   * spelled `token_id:N` (vLLM's `return_tokens_as_token_ids`): see `fakeTopLogprobs`. `refuseEcho` answers echo
   * with logprobs by a 400, as OpenAI's newer models do.
   */
  tokenModel?: { vocab: number; refuseEcho?: boolean };
}

/** The synthetic model's top-k after a prefix of ids: k ids spread over the vocabulary, decreasing log-probabilities. */
export function fakeTopLogprobs(prefix: number[], k: number, vocab: number): { id: number; logprob: number }[] {
  let h = 17;
  for (const id of prefix) h = (Math.imul(h, 31) + id + 1) >>> 0;
  return Array.from({ length: k }, (_, j) => ({ id: (h + 97 * j) % vocab, logprob: -0.5 - 0.7 * j }));
}

function tokenModelAnswer(body: Record<string, unknown>, m: NonNullable<FakeOptions['tokenModel']>) {
  const prompt = body.prompt as number[];
  const k = body.logprobs as number;
  const echo = body.echo === true;
  if (echo && m.refuseEcho)
    return {
      status: 400,
      body: {
        error: {
          message: 'echo is not supported with logprobs',
          type: 'invalid_request_error',
          param: 'echo',
          code: null,
        },
      },
    };
  const top = (prefix: number[]) =>
    Object.fromEntries(fakeTopLogprobs(prefix, k, m.vocab).map((c) => [`token_id:${c.id}`, c.logprob]));
  const next = fakeTopLogprobs(prompt, 1, m.vocab)[0] as { id: number; logprob: number };
  const positions = echo ? prompt.map((_, i) => prompt.slice(0, i)) : [];
  return {
    status: 200,
    body: {
      id: 'fake-tokens',
      object: 'text_completion',
      created: 1700000000,
      model: String(body.model),
      choices: [
        {
          index: 0,
          text: '',
          finish_reason: 'length',
          logprobs: {
            tokens: [...(echo ? prompt : []), next.id].map((id) => `token_id:${id}`),
            token_logprobs: [...positions.map((p, i) => (i === 0 ? null : -1 - (p.length % 3))), next.logprob],
            top_logprobs: [...positions.map((p, i) => (i === 0 ? null : top(p))), top(prompt)],
            text_offset: [],
          },
        },
      ],
      usage: { prompt_tokens: prompt.length, completion_tokens: 1, total_tokens: prompt.length + 1 },
    },
  };
}

export async function startFakeUpstream(opts: FakeOptions = {}): Promise<FakeUpstream> {
  const faults: Fault[] = [];
  const received: Received[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  let seq = 0;

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '').replace(/\?.*$/, '');
    const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
    const rec: Received = { path, headers: req.headers, body, aborted: false };
    received.push(rec);
    res.on('close', () => {
      if (!res.writableFinished) rec.aborted = true;
    });
    for (const w of waiters.filter((w) => received.length >= w.n)) w.resolve();

    if (path.endsWith('/models') && req.method === 'GET') {
      return json(res, 200, {
        object: 'list',
        data: [{ id: 'fake-model', object: 'model', created: 0, owned_by: 'fake' }],
      });
    }
    if (path.endsWith('/embeddings') && req.method === 'POST') {
      const inputs = Array.isArray(body.input) ? body.input : [body.input];
      return json(res, 200, {
        object: 'list',
        model: body.model,
        data: inputs.map((x, index) => {
          const v = [String(x).length, 0.5, -0.5];
          // As OpenAI does: base64 of little-endian float32 when asked (the SDK asks by default).
          const embedding =
            body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
          return { object: 'embedding', index, embedding };
        }),
        usage: { prompt_tokens: inputs.length, total_tokens: inputs.length },
      });
    }
    const known = req.method === 'POST' && (path.endsWith('/chat/completions') || path.endsWith('/completions'));
    if (!known) {
      return json(res, 404, {
        error: {
          message: `fake: no route ${req.method} ${path}`,
          type: 'invalid_request_error',
          param: null,
          code: 'unknown_url',
        },
      });
    }
    const fault = faults.shift();
    if (fault && 'status' in fault) {
      return json(
        res,
        fault.status,
        fault.body ?? {
          error: { message: `fake error ${fault.status}`, type: 'server_error', param: null, code: null },
        },
        fault.headers,
      );
    }
    if (fault && 'hang' in fault) return; // never answers; the client must time out
    if (fault && 'delayMs' in fault) await sleep(fault.delayMs);
    if (fault && 'malformedJson' in fault) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{"id": "x", "choices": [');
    }

    const chat = path.endsWith('/chat/completions');
    if (!chat && opts.tokenModel && Array.isArray(body.prompt) && typeof body.logprobs === 'number') {
      const answer = tokenModelAnswer(body, opts.tokenModel);
      return json(res, answer.status, answer.body);
    }
    const id = `fake-${++seq}`;
    const model = String(body.model ?? 'fake-model');
    const text = opts.reply ?? `echo: ${lastUserText(body)}`;
    const tokens = words(text);
    const usage = { prompt_tokens: 7, completion_tokens: tokens.length, total_tokens: 7 + tokens.length };
    const top = typeof body.top_logprobs === 'number' ? body.top_logprobs : 0;
    const tools = Array.isArray(body.tools) && body.tools.length > 0;
    const toolCalls = tools
      ? [
          {
            id: 'call_1',
            type: 'function',
            function: {
              name: (body.tools as { function?: { name?: string } }[])[0]?.function?.name ?? 'f',
              arguments: '{"q":"x"}',
            },
          },
        ]
      : undefined;

    if (body.stream !== true) {
      const choice = chat
        ? {
            index: 0,
            message: {
              role: 'assistant',
              content: toolCalls ? null : text,
              ...(toolCalls && { tool_calls: toolCalls }),
            },
            logprobs: body.logprobs ? logprobsFor(tokens, top) : null,
            finish_reason: toolCalls ? 'tool_calls' : 'stop',
          }
        : { index: 0, text, logprobs: null, finish_reason: 'stop' };
      return json(res, 200, {
        id,
        object: chat ? 'chat.completion' : 'text_completion',
        created: 1700000000,
        model,
        system_fingerprint: 'fp_fake',
        choices: [choice],
        usage,
        fake_extra_field: { kept: true },
      });
    }

    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const send = (o: unknown) => res.write(`data: ${JSON.stringify(o)}\n\n`);
    const base = {
      id,
      object: chat ? 'chat.completion.chunk' : 'text_completion',
      created: 1700000000,
      model,
      system_fingerprint: 'fp_fake',
    };
    if (chat)
      send({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    for (let i = 0; i < tokens.length; i++) {
      if (fault && 'resetAfterChunks' in fault && i === fault.resetAfterChunks) {
        // Let what was written reach the client first, then drop the connection without ending the response.
        await sleep(30);
        req.socket.destroy();
        return;
      }
      if (fault && 'errorEventAfterChunks' in fault && i === fault.errorEventAfterChunks) {
        send({ error: { message: 'fake mid-stream failure', type: 'server_error', param: null, code: null } });
        return res.end();
      }
      if (opts.chunkDelayMs) await sleep(opts.chunkDelayMs);
      if (res.destroyed) return;
      const t = tokens[i] as string;
      send({
        ...base,
        choices: [
          chat
            ? {
                index: 0,
                delta: { content: t },
                logprobs: body.logprobs ? logprobsFor([t], top) : null,
                finish_reason: null,
              }
            : { index: 0, text: t, logprobs: null, finish_reason: null },
        ],
      });
    }
    send({
      ...base,
      choices: [chat ? { index: 0, delta: {}, finish_reason: 'stop' } : { index: 0, text: '', finish_reason: 'stop' }],
    });
    const so = body.stream_options as { include_usage?: boolean } | undefined;
    if (so?.include_usage) send({ ...base, choices: [], usage });
    res.end('data: [DONE]\n\n');
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent)
        json(res, 500, { error: { message: 'fake upstream failure', type: 'server_error', param: null, code: null } });
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    received,
    enqueue: (...f) => faults.push(...f),
    waitFor: (n) => new Promise((resolve) => (received.length >= n ? resolve() : waiters.push({ n, resolve }))),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const s = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s), ...headers });
  res.end(s);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
