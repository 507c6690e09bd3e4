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

/**
 * Response headers as the SDK reads them (get, has, entries, forEach), over undici's plain object: building a WHATWG
 * Headers per response costs more than the lookups it serves.
 */
class PlainHeaders {
  constructor(private readonly raw: Record<string, string | string[] | undefined>) {}
  get(name: string): string | null {
    const v = this.raw[name.toLowerCase()];
    return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
  }
  has(name: string): boolean {
    return this.raw[name.toLowerCase()] !== undefined;
  }
  *entries(): IterableIterator<[string, string]> {
    for (const k of Object.keys(this.raw)) {
      const v = this.get(k);
      if (v !== null) yield [k, v];
    }
  }
  [Symbol.iterator]() {
    return this.entries();
  }
  forEach(f: (value: string, key: string) => void): void {
    for (const [k, v] of this.entries()) f(v, k);
  }
}

/** The SDK hands its request headers over as a Headers object; undici wants a plain one. */
function plainRequestHeaders(h: RequestInit['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  if (h instanceof Headers) {
    h.forEach((v, k) => {
      out[k] = v;
    });
  } else if (h) {
    new Headers(h).forEach((v, k) => {
      out[k] = v;
    });
  }
  return out;
}

export async function upstreamFetch(input: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  const res = await request(url, {
    method: (init.method ?? 'GET') as 'GET',
    headers: plainRequestHeaders(init.headers),
    body: init.body as string | undefined,
    signal: init.signal ?? undefined,
    dispatcher: agent,
  });
  const lean: LeanResponse = {
    ok: res.statusCode >= 200 && res.statusCode < 300,
    status: res.statusCode,
    statusText: '',
    url,
    headers: new PlainHeaders(res.headers) as unknown as Headers,
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
