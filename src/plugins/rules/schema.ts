import { z } from 'zod';

export const RulesConfigSchema = z.strictObject({
  /** Case-insensitive words or phrases, matched on word boundaries. */
  keywords: z.array(z.string().min(1)).default([]),
  /** JavaScript regular expressions (flags `iu`). */
  regex: z
    .array(
      z.string().refine((s) => {
        try {
          new RegExp(s, 'iu');
          return true;
        } catch {
          return false;
        }
      }, 'not a valid regular expression'),
    )
    .default([]),
  input: z.boolean().default(true),
  output: z.boolean().default(true),
  /** block: deny with guardrail_blocked; flag: let it through and report it. */
  action: z.enum(['block', 'flag']).default('block'),
  /**
   * Characters of earlier streamed text re-checked with each chunk, so a phrase split across chunks is still caught.
   * Must exceed the longest phrase a pattern can match.
   */
  streamOverlap: z.number().int().min(0).default(256),
});

export type RulesConfig = z.infer<typeof RulesConfigSchema>;
