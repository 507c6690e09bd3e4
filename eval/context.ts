import pino from 'pino';
import type { RequestContext } from '../src/plugins/types.js';

/** What a plugin hook gets for one request, outside a server: an eval calls hooks directly. */
export function evalRequest(): { ctx: RequestContext; signal: AbortSignal } {
  const ctx: RequestContext = {
    requestId: 'eval',
    endpoint: 'chat',
    model: 'eval',
    stream: false,
    options: {},
    logger: pino({ level: 'silent' }),
    state: new Map(),
  };
  return { ctx, signal: new AbortController().signal };
}
