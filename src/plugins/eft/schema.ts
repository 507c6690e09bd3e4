import { z } from 'zod';

/** beta's range: 0 is the large model alone, 1 is EFT up-scaling; past 4 the delta swamps the large model. */
const Beta = z.number().min(0).max(4);
const Gamma = z.number().int().min(0).max(16);

export const EftConfigSchema = z.strictObject({
  /** Scale of the small models' fine-tuning delta. */
  beta: Beta.default(1),
  /**
   * Fine-tuned small models and their weights in the delta (EFT's behaviour mixing: e.g. 0.7 helpful + 0.3 harmless).
   * They see the chat template; the first one drafts in speculative mode.
   */
  experts: z.array(z.strictObject({ model: z.string().min(1), weight: z.number().min(-4).max(4).default(1) })).min(1),
  /** The small base model the experts were fine-tuned from (sees the raw prompt, as the large model does). */
  base: z.string().min(1),
  large: z
    .strictObject({
      /**
       * How the route's upstream gives its distribution: `local` (full logits of a local: model), `completions`
       * (`/v1/completions` with `logprobs: k`), `chat` (`top_logprobs: k`). `auto`: local if the upstream is local, else
       * completions.
       */
      kind: z.enum(['auto', 'local', 'completions', 'chat']).default('auto'),
      /** k: top-k logprobs per position from a remote upstream (OpenAI: up to 5 on completions, 20 on chat). */
      topLogprobs: z.number().int().min(1).max(20).default(20),
      /**
       * For a remote large model: a model name or folder holding the tokenizer.json it uses. Required there, so the
       * shared-tokenizer check happens at start-up rather than as garbage output.
       */
      tokenizer: z.string().min(1).optional(),
      /**
       * Tokens outside a remote model's top-k. `base` (default): they share the mass the top-k left over in the
       * small base model's proportions, so the small models' delta can still choose them; a base model seldom ranks
       * the end of an answer in its top-k, and without this answers run on to max_tokens. `exclude`: EFT combines on
       * the top-k support only.
       */
      outside: z.enum(['exclude', 'base']).default('base'),
      /** Chat upstreams: tokens the large model runs ahead per call. */
      lookahead: z.number().int().min(1).max(64).default(16),
      /** Extra fields sent with every upstream call, e.g. `{return_tokens_as_token_ids: true}` for vLLM. */
      extra: z.record(z.string(), z.unknown()).default({}),
    })
    .default({ kind: 'auto', topLogprobs: 20, outside: 'base', lookahead: 16, extra: {} }),
  /**
   * Tokens drafted per speculative round; 0 decodes token by token. 6: on the remote path (`npm run bench -- eft`)
   * calls per token fall from 0.48 (gamma 2) to 0.33 (4), 0.29 (6), 0.28 (8) while acceptance falls from 62% to 48%;
   * 6 and 8 are both about 2.6x faster than token by token, 4 about 2.3x.
   */
  gamma: Gamma.default(6),
  /** max_tokens when the request gives none. */
  defaultMaxTokens: z.number().int().min(1).default(256),
});
export type EftConfig = z.infer<typeof EftConfigSchema>;

/** `tandem: {eft: {...}}` in a request body. */
export const EftRequestOptionsSchema = z.strictObject({ beta: Beta.optional(), gamma: Gamma.optional() });
