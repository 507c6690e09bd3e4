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
      /** Labels that count; default all. */
      labels: z.array(z.string().min(1)).optional(),
      action: Action.default('block'),
    })
    .optional(),
  /** A generative guard in Llama Guard's format (Llama-Guard-3-1B, or the project's tandem-guard). */
  llamaGuard: z
    .strictObject({
      model: z.string().min(1),
      /** Unsafe when P(unsafe) from the first answer token reaches this, or the answer says unsafe. */
      threshold: z.number().min(0).max(1).default(0.5),
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
   * The classifier reads texts in overlapping pieces of this many characters (default: 3 per token of the model's
   * maximum length), at most `maxPieces` of them from the start; a longer text is reported `truncated`.
   */
  pieceChars: z.number().int().min(50).optional(),
  maxPieces: z.number().int().min(1).max(1024).default(64),
});
export type GuardConfig = z.infer<typeof GuardConfigSchema>;
