import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import stringify from 'safe-stable-stringify';
import type { JsonObject } from '../plugins/types.js';

export interface CacheOptions {
  maxEntries: number;
  maxBytes: number;
  ttlMs: number;
}

interface Entry {
  body: string;
}

/**
 * Identical non-streamed requests at temperature 0 get the stored answer. The key is a hash of the request as it
 * goes upstream (key order normalised, after request plugins ran) and the route, so two routes never share answers.
 */
export class ResponseCache {
  private readonly lru: LRUCache<string, Entry>;

  constructor(opts: CacheOptions) {
    this.lru = new LRUCache<string, Entry>({
      max: opts.maxEntries,
      maxSize: opts.maxBytes,
      sizeCalculation: (e) => Math.max(1, e.body.length),
      ttl: opts.ttlMs,
    });
  }

  static cacheable(body: JsonObject): boolean {
    return body.temperature === 0 && body.stream !== true;
  }

  key(routeId: string, endpoint: string, body: JsonObject): string {
    return createHash('sha256')
      .update(`${routeId}\n${endpoint}\n${stringify(body)}`)
      .digest('base64url');
  }

  get(key: string): JsonObject | undefined {
    const e = this.lru.get(key);
    return e ? (JSON.parse(e.body) as JsonObject) : undefined;
  }

  set(key: string, response: JsonObject): void {
    this.lru.set(key, { body: JSON.stringify(response) });
  }
}
