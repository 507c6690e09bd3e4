import { z } from 'zod';
import { PATTERN_LABELS } from './patterns.js';

/**
 * Defaults derived by `npm run eval -- jailbreak` (eval/jailbreak.ts) on 2026-12-01; the dated table is in README.md,
 * the numbers in reports/eval-jailbreak.json. They hold for this model and these settings only (create() refuses
 * another model or other settings without explicit thresholds).
 *
 * Data. Benign: the 1,153 distinct moderation samples with no label (openai-moderation-samples-1680) and the
 * 1,175 questions of recipes/eval/chat-heldout.jsonl, split by sha1(prompt)[0] % 2 into a derivation split (1,182:
 * 597 + 585) and a held-out split (1,146). Adversarial, generated with a seeded RNG: a benign prompt + a GCG-style
 * suffix of 12-30 pieces (sub-words, code punctuation, random printable strings, a little non-ASCII), 400 on
 * derivation prompts (dev, seed 1) and 400 on held-out prompts (test, seed 2).
 *
 * Rule. Each threshold is the smallest value that at most 1% of the benign derivation prompts reach. Nothing else
 * fits a threshold; every rate quoted below is on prompts the threshold never saw.
 */
export const DERIVED = {
  model: 'tandem-small-base',
  /**
   * On: per-byte detection on the dev set 0.558 against 0.115 raw (8 words). Curly quotes, emoji and URL query strings
   * are as surprising as an attack to a model trained on dictionary and Bible text.
   */
  normalize: true,
  /** Chosen from 5, 8, 10, 15, 20 by dev detection at the 1% threshold: 0.313, 0.558, 0.523, 0.38, 0.23 (NeMo: 20). */
  words: 8,
  /**
   * Set by design, not fitted: the model knows ASCII English only. Judging every window instead needs a threshold of
   * 100.7, which catches 0.293 of the held-out attacks rather than 0.56.
   */
  maxNonAscii: 0.3,
  /**
   * Set by design, not fitted: a window of fewer scored tokens is not judged. Over one or two tokens a perplexity is
   * noise ("hi", "ok", "42" and ":)" all scored over the threshold without this floor); an 8-word attack window has
   * many more (GCG optimises 20 tokens).
   */
  minTokens: 8,
  thresholds: {
    byte: {
      /**
       * Held-out: flags 1.0% of benign prompts, 0.3% of GCG-style prompts and none of the hand-written jailbreak
       * templates. NeMo aims it at long, fluent role-play prompts; bounded to the model's 256-token context it is
       * mostly a length rule here, hence `flag` by default.
       */
      lengthPerPerplexity: 212.4,
      /**
       * Derivation FPR 0.9%. Held-out: FPR 1.6% (moderation 3.2%, chat questions 0%; 0 of 60 short chat messages
       * such as "hi", "ok", "42"), detection 0.56 of the 400 test attacks (0.579 after chat questions, 0.535 after
       * moderation prompts). Suffixes closer to real GCG output are caught far less: 0.07 of a word-heavy variant, 0.01
       * of prompts carrying either of Zou et al.'s two published suffixes (perplexity ~25 and ~29). Other budgets, same
       * rule and data: 0.5% -> 105.7 (held-out FPR 0.8%, detection 0.278); 2% -> 41.16 (2.0%, 0.683); 5% -> 22.52
       * (5.1%: moderation 10.4%, chat 0.2%; detection 0.95, word-heavy 0.645, both published suffixes 1.0).
       * NeMo's GPT-2 threshold 1845.65 is a per-token number: in NeMo's exact setup (per token, raw text, 20 words,
       * texts under 20 words skipped) our model needs 20980 for 1% FPR and then catches 0.3% of the attacks.
       */
      prefixSuffixPerplexity: 50.99,
    },
    token: {
      /** Per-token perplexity, as NeMo computes it; same rule. Held-out FPR 1.1%. */
      lengthPerPerplexity: 5.772,
      /** Same rule. Held-out FPR 1.6%, detection 0.50. */
      prefixSuffixPerplexity: 2159,
    },
  },
} as const;

/** block: 400 guardrail_blocked naming the check; flag: let it through, reported in `tandem.checks`; off: not run. */
const Action = z.enum(['block', 'flag', 'off']);

const RegexSource = z.string().refine((s) => {
  try {
    new RegExp(s, 'iu');
    return true;
  } catch {
    return false;
  }
}, 'not a valid regular expression');

export const JailbreakConfigSchema = z.strictObject({
  /**
   * The guard model (a name from the registry, or a folder path relative to the config file). Loaded at start: a
   * missing or corrupt model stops the server with its name. The default thresholds hold for DERIVED.model only.
   */
  model: z.string().min(1).default(DERIVED.model),
  /** Chat roles whose messages are checked (completions prompts always are). Add `tool` for indirect injection. */
  roles: z.array(z.string().min(1)).min(1).default(['user']),
  /**
   * Normalise the text the perplexity checks score (text.ts `normalize`: typography folded to ASCII, emoji dropped, URLs
   * replaced by `URL`); the default thresholds assume it.
   */
  normalize: z.boolean().default(DERIVED.normalize),
  /**
   * Perplexity per UTF-8 `byte` (default: it does not reward a text for breaking into many short tokens, which random
   * strings do) or per `token`, as NeMo Guardrails computes it with GPT-2.
   */
  unit: z.enum(['byte', 'token']).default('byte'),
  /** NeMo's length/perplexity: characters of the scored window / its perplexity >= threshold. Aims at long, fluent jailbreaks (DAN). */
  lengthPerPerplexity: z
    .strictObject({
      action: Action.default('flag'),
      /** Default: DERIVED.thresholds[unit].lengthPerPerplexity. */
      threshold: z.number().positive().optional(),
    })
    .prefault({}),
  /** NeMo's prefix/suffix perplexity: the first or last `words` words, scored alone, >= threshold. Aims at GCG suffixes. */
  prefixSuffixPerplexity: z
    .strictObject({
      action: Action.default('block'),
      /** Default: DERIVED.thresholds[unit].prefixSuffixPerplexity. */
      threshold: z.number().positive().optional(),
      /** Words in each window (NeMo: 20); the default thresholds hold for DERIVED.words. */
      words: z.number().int().min(1).max(200).default(DERIVED.words),
      /** Texts with fewer words are not checked (NeMo: 20). */
      minWords: z.number().int().min(0).default(0),
      /**
       * A window with a larger share of non-ASCII characters is not judged: the model knows ASCII English only, and
       * Cyrillic or Chinese prose is as surprising to it as any attack. 1 judges every window.
       */
      maxNonAscii: z.number().min(0).max(1).default(DERIVED.maxNonAscii),
      /** A window of fewer scored tokens is not judged (its perplexity is noise). */
      minTokens: z.number().int().min(0).default(DERIVED.minTokens),
    })
    .prefault({}),
  /** Well-known jailbreak and injection phrasings (patterns.ts), matched case-insensitively on the raw and the folded text. */
  patterns: z
    .strictObject({
      action: Action.default('block'),
      disable: z.array(z.enum(PATTERN_LABELS)).default([]),
      /** More rules: label -> JavaScript regex (flags iu). */
      extra: z.record(z.string().regex(/^[\w.-]+$/, 'labels are letters, digits, _ . -'), RegexSource).default({}),
    })
    .prefault({}),
  /** Binary-looking input: a share of control characters / U+FFFD that no text has. Checked before the model runs. */
  binary: z
    .strictObject({
      action: Action.default('block'),
      maxRatio: z.number().min(0).max(1).default(0.1),
      /** Shorter texts are not judged (a stray control character in a short message is not binary). */
      minChars: z.number().int().min(1).default(32),
    })
    .prefault({}),
  /** Windows scored in one forward pass at most. */
  maxBatch: z.number().int().min(1).max(64).default(8),
  /** Scored windows remembered (earlier turns are re-sent with every request); 0 = off. */
  cacheSize: z.number().int().min(0).default(2048),
});

export type JailbreakConfig = z.infer<typeof JailbreakConfigSchema>;
