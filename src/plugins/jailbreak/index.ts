import { isAbsolute, resolve } from 'node:path';
import type { CausalLM } from '../../slm/causalLM.js';
import { ModelRegistry } from '../../slm/registry.js';
import { contentText } from '../text.js';
import type { CheckOutcome, JsonObject, PluginDefinition, PluginEnv } from '../types.js';
import { type JailbreakPattern, matchPatterns, PATTERNS } from './patterns.js';
import { DERIVED, type JailbreakConfig, JailbreakConfigSchema } from './schema.js';
import { type Nll, perplexity, type Unit, WindowScorer } from './scorer.js';
import { fold, nonAsciiShare, nonPrintableRatio, promptWindows } from './text.js';

export { PATTERNS } from './patterns.js';
export { DERIVED, type JailbreakConfig, JailbreakConfigSchema } from './schema.js';
export { type Nll, perplexity, WindowScorer } from './scorer.js';
export { fold, nonAsciiShare, nonPrintableRatio, normalize, promptWindows } from './text.js';

/** Both heuristics' numbers for one text, in both units. */
export interface TextScores {
  words: number;
  /** Characters of the window scored for length/perplexity (at most the model's context). */
  chars: number;
  full: Nll;
  prefix: Nll;
  suffix: Nll;
  /** Share of non-ASCII characters in the prefix and suffix windows. */
  prefixNonAscii: number;
  suffixNonAscii: number;
}

export const lengthPerPerplexity = (s: TextScores, unit: Unit): number => {
  const p = perplexity(s.full, unit);
  return p === undefined ? 0 : s.chars / p;
};

/**
 * The larger of the two windows' perplexities. A window over `maxNonAscii` or under `minTokens` scored tokens counts
 * as 0 (not judged).
 */
export const prefixSuffixPerplexity = (
  s: TextScores,
  unit: Unit,
  maxNonAscii = 1,
  minTokens = 0,
): { value: number; window: 'prefix' | 'suffix' } => {
  const judge = (n: Nll, share: number) =>
    share > maxNonAscii || n.tokens < minTokens ? 0 : (perplexity(n, unit) ?? 0);
  const pre = judge(s.prefix, s.prefixNonAscii);
  const suf = judge(s.suffix, s.suffixNonAscii);
  return suf > pre ? { value: suf, window: 'suffix' } : { value: pre, window: 'prefix' };
};

/**
 * The windows of every text (whole-ish text, first and last `words` words) scored in one batched call. The text scored
 * for length/perplexity is at most `16 x context` characters, then at most the context in tokens.
 */
export async function scoreTexts(
  scorer: WindowScorer,
  texts: string[],
  opts: { words: number; normalize: boolean },
  signal?: AbortSignal,
): Promise<TextScores[]> {
  const bound = scorer.contextLength * 16;
  const wins = texts.map((t) => promptWindows(t, opts.words, bound, opts.normalize));
  const nll = await scorer.score(
    wins.flatMap((w) => [w.full, w.prefix, w.suffix]),
    signal,
  );
  return wins.map((w, i) => {
    const full = nll[3 * i] as Nll;
    return {
      words: w.words,
      chars: full.chars,
      full,
      prefix: nll[3 * i + 1] as Nll,
      suffix: nll[3 * i + 2] as Nll,
      prefixNonAscii: nonAsciiShare(w.prefix.text),
      suffixNonAscii: nonAsciiShare(w.suffix.text),
    };
  });
}

/** The texts a request sends that this plugin checks: chat messages of the configured roles, or completion prompts. */
export function checkedTexts(body: JsonObject, roles: readonly string[]): string[] {
  if (Array.isArray(body.messages)) {
    return (body.messages as JsonObject[])
      .filter((m) => m && roles.includes(String(m.role)))
      .map((m) => contentText(m.content))
      .filter(Boolean);
  }
  const p = body.prompt;
  if (typeof p === 'string') return p ? [p] : [];
  if (Array.isArray(p)) return p.filter((x): x is string => typeof x === 'string' && x.length > 0);
  return [];
}

function thresholds(cfg: JailbreakConfig): { lp: number; ps: number } {
  const derived = DERIVED.thresholds[cfg.unit];
  const same = cfg.model === DERIVED.model && cfg.normalize === DERIVED.normalize;
  const need = (what: string, given: number | undefined, fallback: number, ok: boolean, active: boolean) => {
    if (given !== undefined || !active) return given ?? fallback;
    if (ok) return fallback;
    throw new Error(
      `jailbreak: no ${what}.threshold for model '${cfg.model}' (normalize ${cfg.normalize}${what === 'prefixSuffixPerplexity' ? `, words ${cfg.prefixSuffixPerplexity.words}, maxNonAscii ${cfg.prefixSuffixPerplexity.maxNonAscii}, minTokens ${cfg.prefixSuffixPerplexity.minTokens}` : ''}): the defaults were derived for model '${DERIVED.model}', normalize ${DERIVED.normalize}, words ${DERIVED.words}, maxNonAscii ${DERIVED.maxNonAscii}, minTokens ${DERIVED.minTokens}; set ${what}.threshold (npm run eval -- jailbreak --model ${cfg.model} derives one)`,
    );
  };
  return {
    lp: need(
      'lengthPerPerplexity',
      cfg.lengthPerPerplexity.threshold,
      derived.lengthPerPerplexity,
      same,
      cfg.lengthPerPerplexity.action !== 'off',
    ),
    ps: need(
      'prefixSuffixPerplexity',
      cfg.prefixSuffixPerplexity.threshold,
      derived.prefixSuffixPerplexity,
      same &&
        cfg.prefixSuffixPerplexity.words === DERIVED.words &&
        cfg.prefixSuffixPerplexity.maxNonAscii === DERIVED.maxNonAscii &&
        cfg.prefixSuffixPerplexity.minTokens === DERIVED.minTokens,
      cfg.prefixSuffixPerplexity.action !== 'off',
    ),
  };
}

async function loadGuard(cfg: JailbreakConfig, env: PluginEnv, models: ModelRegistry): Promise<CausalLM> {
  const pathLike = cfg.model.startsWith('.') || isAbsolute(cfg.model);
  const name = pathLike ? resolve(env.baseDir, cfg.model) : cfg.model;
  try {
    return (await models.causalLM(name)).lm;
  } catch (err) {
    throw new Error(
      `jailbreak: guard model '${cfg.model}'${pathLike ? ` (${name})` : ''} cannot be loaded, so the plugin cannot check anything and Tandem does not start: ${(err as Error).message}`,
    );
  }
}

const sig = (x: number) => Number(x.toPrecision(4));

/** A verdict for a check whose action is not `off`. */
const verdictOf = (hit: boolean, action: 'block' | 'flag') => (hit ? action : 'pass');

/** Jailbreak and prompt-injection heuristics: NeMo Guardrails' two perplexity checks on a local SLM, plus rules. */
export const jailbreakPlugin: PluginDefinition<JailbreakConfig> = {
  id: 'jailbreak',
  description:
    'Jailbreak and prompt-injection heuristics: length/perplexity and prefix/suffix perplexity on a local SLM (as NeMo Guardrails does with GPT-2), well-known phrasings, binary input',
  configSchema: JailbreakConfigSchema,
  defaultFailMode: 'closed',
  async create(cfg, env) {
    const lpOn = cfg.lengthPerPerplexity.action !== 'off';
    const psOn = cfg.prefixSuffixPerplexity.action !== 'off';
    let own: ModelRegistry | undefined;
    let scorer: WindowScorer | undefined;
    if (lpOn || psOn) {
      const models = env.models ?? new ModelRegistry({}, env.baseDir);
      if (!env.models) own = models;
      try {
        scorer = await WindowScorer.create(await loadGuard(cfg, env, models), {
          maxBatch: cfg.maxBatch,
          cacheSize: cfg.cacheSize,
        });
      } catch (err) {
        await own?.close();
        throw err;
      }
    }
    // After the model: a guard model that cannot load is the error to report first.
    let t: { lp: number; ps: number };
    try {
      t = thresholds(cfg);
    } catch (err) {
      await own?.close();
      throw err;
    }
    const patterns: JailbreakPattern[] = [
      ...PATTERNS.filter((p) => !cfg.patterns.disable.includes(p.label)),
      ...Object.entries(cfg.patterns.extra).map(([label, src]) => ({
        label,
        why: 'configured',
        re: new RegExp(src, 'iu'),
      })),
    ];
    const unit = cfg.unit;
    const ps = cfg.prefixSuffixPerplexity;

    const check = async (texts: string[], signal: AbortSignal): Promise<CheckOutcome<never>[]> => {
      const out: CheckOutcome<never>[] = [];
      let blocked = false;
      if (cfg.binary.action !== 'off') {
        let worst = { ratio: 0, count: 0 };
        for (const text of texts) {
          if (text.length < cfg.binary.minChars) continue;
          const r = nonPrintableRatio(text);
          if (r.ratio > worst.ratio) worst = r;
        }
        const hit = worst.ratio >= cfg.binary.maxRatio;
        out.push({
          check: 'binary',
          verdict: verdictOf(hit, cfg.binary.action),
          ...(hit
            ? { data: { non_printable: worst.count, ratio: sig(worst.ratio), max_ratio: cfg.binary.maxRatio } }
            : {}),
        });
        blocked ||= hit && cfg.binary.action === 'block';
      }
      if (cfg.patterns.action !== 'off' && !blocked) {
        const folded = texts.map(fold).filter((f, i) => f !== texts[i]);
        const matched = matchPatterns(patterns, [...texts, ...folded]);
        out.push({
          check: 'patterns',
          verdict: verdictOf(matched.length > 0, cfg.patterns.action),
          ...(matched.length ? { data: { matched } } : {}),
        });
        blocked ||= matched.length > 0 && cfg.patterns.action === 'block';
      }
      // A request a cheap rule already blocks does not need the model.
      if (!scorer || blocked || texts.length === 0) return out;
      const scores = await scoreTexts(scorer, texts, { words: ps.words, normalize: cfg.normalize }, signal);
      if (cfg.lengthPerPerplexity.action !== 'off') {
        let best = { value: 0, i: 0 };
        scores.forEach((s, i) => {
          const v = lengthPerPerplexity(s, unit);
          if (v > best.value) best = { value: v, i };
        });
        const s = scores[best.i] as TextScores;
        out.push({
          check: 'length_per_perplexity',
          verdict: verdictOf(best.value >= t.lp, cfg.lengthPerPerplexity.action),
          data: {
            score: sig(best.value),
            threshold: t.lp,
            unit,
            chars: s.chars,
            perplexity: sig(perplexity(s.full, unit) ?? 0),
          },
        });
      }
      if (ps.action !== 'off') {
        let best = { value: 0, window: 'prefix' as 'prefix' | 'suffix', i: -1 };
        scores.forEach((s, i) => {
          if (s.words < ps.minWords) return;
          const v = prefixSuffixPerplexity(s, unit, ps.maxNonAscii, ps.minTokens);
          if (v.value > best.value) best = { ...v, i };
        });
        out.push({
          check: 'prefix_suffix_perplexity',
          verdict: verdictOf(best.value >= t.ps, ps.action),
          data: {
            perplexity: sig(best.value),
            threshold: t.ps,
            unit,
            window: best.i < 0 ? 'none' : best.window,
            words: ps.words,
          },
        });
      }
      return out;
    };

    return {
      onRequest: async ({ body, signal }) => check(checkedTexts(body, cfg.roles), signal),
      close: async () => {
        await own?.close();
      },
    };
  },
};
