import type { JsonObject } from '../../plugins/types.js';
import type { CausalLM } from '../../slm/causalLM.js';

export interface CallOptions {
  signal: AbortSignal;
  requestId: string;
  /** The client's Authorization header, used only by upstreams configured with `passthroughAuth`. */
  clientAuthorization?: string;
}

/** Any other OpenAI endpoint (embeddings, files, moderations, ...), relayed as it is. */
export interface RelayRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path below the API base, with its query: `/embeddings`, `/files/abc?x=1`. */
  path: string;
  contentType?: string;
  body?: Buffer;
}

export interface RelayResponse {
  status: number;
  contentType: string | null;
  body: AsyncIterable<Uint8Array>;
}

/**
 * The large model behind Tandem. Two kinds implement it: HTTP (any OpenAI-compatible server, through the openai SDK)
 * and local (a family model in process). Streams yield OpenAI chunk objects.
 */
export interface Upstream {
  readonly name: string;
  chat(body: JsonObject, opts: CallOptions): Promise<JsonObject>;
  chatStream(body: JsonObject, opts: CallOptions): Promise<AsyncIterable<JsonObject>>;
  completion(body: JsonObject, opts: CallOptions): Promise<JsonObject>;
  completionStream(body: JsonObject, opts: CallOptions): Promise<AsyncIterable<JsonObject>>;
  listModels(opts: CallOptions): Promise<JsonObject[]>;
  /** Relays an endpoint Tandem does not interpret; absent for upstreams that only generate (local models). */
  relay?(req: RelayRequest, opts: CallOptions): Promise<RelayResponse>;
  /** The model itself, for plugins that need full logits (EFT); only upstreams running a model in process have it. */
  causalLM?(): Promise<CausalLM>;
  close?(): Promise<void>;
}
