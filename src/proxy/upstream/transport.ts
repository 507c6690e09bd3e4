import { Agent, request } from 'undici';
import { rawJson } from '../rawJson.js';

/**
 * How Tandem reaches HTTP upstreams: undici's `request` on a keep-alive pool instead of the global fetch, answering
 * with a lean object that reads like a fetch Response (status, headers, `json()`, `text()`, an async-iterable
 * `body`). Web streams and Request/Headers objects per call cost a proxy more CPU than everything else it does
 * (measured by `npm run bench -- proxy`).
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

/** Request headers as a plain object (what undici takes), from the Headers object the SDK builds. */
export function plainHeaders(h: RequestInit['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  if (h) {
    (h instanceof Headers ? h : new Headers(h)).forEach((v, k) => {
      out[k] = v;
    });
  }
  return out;
}

export interface TransportRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  headers: Record<string, string>;
  body?: string | Buffer;
  signal: AbortSignal;
}

/** Sends one request on the keep-alive pool; the answer reads like a fetch Response (see LeanResponse). */
export async function send(url: string, req: TransportRequest): Promise<Response> {
  const res = await request(url, { ...req, dispatcher: agent });
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
