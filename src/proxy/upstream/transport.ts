import { Agent, request } from 'undici';
import { rawJson } from '../rawJson.js';

/**
 * The `fetch` the openai SDK uses to reach upstreams: undici's `request` on a keep-alive pool instead of the global
 * fetch. The SDK only reads status, headers, `json()`, `text()` and an async-iterable `body`, so a lean response
 * object carries a Node stream as body; web streams and a Request object per call cost a proxy more CPU per
 * request than everything else it does (measured by `npm run bench -- proxy`).
 */
const agent = new Agent({
  keepAliveTimeout: 30_000,
  // Our own deadlines (HttpUpstream) govern time to first byte and gaps in a stream.
  headersTimeout: 0,
  bodyTimeout: 0,
});

interface LeanResponse {
  ok: boolean;
  status: number;
  statusText: string;
  url: string;
  headers: Headers;
  body: AsyncIterable<Uint8Array>;
  json(): Promise<unknown>;
  text(): Promise<string>;
}

export async function upstreamFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const headers: Record<string, string> = {};
  new Headers(init.headers).forEach((v, k) => {
    headers[k] = v;
  });
  const res = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    headers,
    body: init.body as string | undefined,
    signal: init.signal ?? undefined,
    dispatcher: agent,
  });
  const out = new Headers();
  for (const [k, v] of Object.entries(res.headers)) {
    if (Array.isArray(v)) for (const x of v) out.append(k, x);
    else if (v !== undefined) out.set(k, v);
  }
  const lean: LeanResponse = {
    ok: res.statusCode >= 200 && res.statusCode < 300,
    status: res.statusCode,
    statusText: '',
    url,
    headers: out,
    body: res.body,
    json: async () => {
      const text = await res.body.text();
      const value = JSON.parse(text) as unknown;
      if (value && typeof value === 'object') rawJson.set(value, text);
      return value;
    },
    text: () => res.body.text(),
  };
  return lean as unknown as Response;
}
