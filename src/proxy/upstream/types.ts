import type { JsonObject } from '../../plugins/types.js';

export interface CallOptions {
  signal: AbortSignal;
  requestId: string;
  /** The client's Authorization header, used only by upstreams configured with `passthroughAuth`. */
  clientAuthorization?: string;
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
  close?(): Promise<void>;
}
