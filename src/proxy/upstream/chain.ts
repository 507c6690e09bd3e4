import type { JsonObject } from '../../plugins/types.js';
import type { CausalLM } from '../../slm/causalLM.js';
import { HttpError } from '../errors.js';
import { UpstreamError } from './errors.js';
import type { CallOptions, RelayRequest, Upstream } from './types.js';

/**
 * A primary upstream and its fallbacks behind the Upstream interface. The next upstream is tried only for failures
 * worth retrying (429, 5xx, connection, timeout) and, for streams, only before the first chunk.
 */
export class UpstreamChain implements Upstream {
  readonly name: string;

  constructor(private readonly members: Upstream[]) {
    if (members.length === 0) throw new Error('an upstream chain needs at least one upstream');
    this.name = members[0]?.name ?? '';
    const primary = members[0];
    // Full logits come from the primary only: a fallback could be another model, which EFT must not mix in silently.
    if (primary?.causalLM) this.causalLM = () => (primary.causalLM as () => Promise<CausalLM>)();
  }

  causalLM?: () => Promise<CausalLM>;

  private async first<T>(call: (u: Upstream) => Promise<T>): Promise<T> {
    let last: unknown;
    for (const member of this.members) {
      try {
        return await call(member);
      } catch (err) {
        if (!(err instanceof UpstreamError) || !err.retryable) throw err;
        last = err;
      }
    }
    throw last;
  }

  chat(body: JsonObject, opts: CallOptions) {
    return this.first((u) => u.chat(body, opts));
  }
  chatStream(body: JsonObject, opts: CallOptions) {
    return this.first((u) => u.chatStream(body, opts));
  }
  completion(body: JsonObject, opts: CallOptions) {
    return this.first((u) => u.completion(body, opts));
  }
  completionStream(body: JsonObject, opts: CallOptions) {
    return this.first((u) => u.completionStream(body, opts));
  }
  listModels(opts: CallOptions) {
    return this.first((u) => u.listModels(opts));
  }
  relay(req: RelayRequest, opts: CallOptions) {
    return this.first((u) => {
      if (!u.relay) throw new HttpError(404, `Upstream '${u.name}' serves only completions.`, { code: 'unknown_url' });
      return u.relay(req, opts);
    });
  }
}
