import { z } from 'zod';

const Action = z.enum(['block', 'flag']);

export const GuardConfigSchema = z.strictObject({
  /**
   * A multi-label safety classifier (sequence classifier in the Optimum layout). Default threshold: the model's
   * own `tandem_threshold` from config.json (chosen on its training split, see its model card), else 0.5.
   */
  classifier: z
    .strictObject({
      model: z.string().min(1),
      threshold: z.number().min(0).max(1).optional(),
      /**
       * A threshold per label, overriding `threshold` for that label. `model`: the model's own per-label thresholds
       * (`tandem_category_thresholds` in its config.json, each chosen like `tandem_threshold`).
       */
      categoryThresholds: z
        .union([z.literal('model'), z.record(z.string().min(1), z.number().min(0).max(1))])
        .optional(),
      /** Labels that count; default all. */
      labels: z.array(z.string().min(1)).optional(),
      action: Action.default('block'),
    })
    .optional(),
  /** A generative guard in Llama Guard's format (Llama-Guard-3-1B, or the project's tandem-guard). */
  llamaGuard: z
    .strictObject({
      model: z.string().min(1),
      /**
       * Unsafe when P(unsafe) from the first answer token reaches this. Default: the model's own `tandem_threshold`
       * (config.json, derived on its training split; see its model card); for a model without one (Llama-Guard-3-1B),
       * the greedy answer's verdict, as Llama Guard is meant to be read.
       */
      threshold: z.number().min(0).max(1).optional(),
      /** Categories (S1..S13) that count; default all. */
      categories: z.array(z.string().regex(/^S\d{1,2}$/)).optional(),
      action: Action.default('block'),
    })
    .optional(),
  /** Check the prompt before it goes upstream. */
  input: z.boolean().default(true),
  /** Check the answer (non-streamed) and the stream. */
  output: z.boolean().default(true),
  stream: z
    .strictObject({
      /**
       * `hold`: chunks wait until the window holding them is checked (nothing unchecked reaches the client; adds
       * latency per window). `as-you-go`: chunks flow at once and windows are checked alongside; a violation cuts
       * the stream at the next chunk (a window's worth may already have been sent).
       */
      mode: z.enum(['hold', 'as-you-go']).default('hold'),
      /** Tokens (streamed chunks) per window. */
      every: z.number().int().min(1).max(4096).default(32),
      /** Tokens each window reaches back into text already checked. */
      overlap: z.number().int().min(0).max(4096).default(8),
    })
    .default({ mode: 'hold', every: 32, overlap: 8 }),
  /**
   * Tokens per window the classifier reads (default: the model's maximum length). Smaller windows find a short unsafe
   * passage inside long benign text that would dilute it in one long window, at more windows per text.
   */
  pieceTokens: z.number().int().min(8).optional(),
  /**
   * The classifier reads each text in windows of `pieceTokens` (overlapping by a quarter), newest message
   * first, at most `maxPieces` windows per request. `overflow` says what happens to a request with more: `block`
   * (fail closed: it is refused, category `too_long`) or `flag` (the newest `maxPieces` windows are checked and the
   * outcome reports `unchecked_tokens`).
   */
  maxPieces: z.number().int().min(1).max(4096).default(256),
  overflow: z.enum(['block', 'flag']).default('block'),
  /**
   * Texts whose classifier scores are remembered (LRU; 0 = off): a chat resends its whole history every turn, and a
   * text read whole once is not classified again. The cache holds the texts as the classifier saw them (after
   * privacy's redaction when privacy runs first).
   */
  cacheSize: z.number().int().min(0).default(2048),
});
export type GuardConfig = z.infer<typeof GuardConfigSchema>;
