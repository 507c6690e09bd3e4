import { requestTexts, responseTexts } from '../text.js';
import type { CheckOutcome, PluginDefinition } from '../types.js';
import { type RulesConfig, RulesConfigSchema } from './schema.js';

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Compiles keywords and regexes into one matcher that names what it found. */
function matcher(cfg: RulesConfig): (text: string) => string[] {
  const patterns = [
    ...cfg.keywords.map((k) => ({
      label: k,
      re: new RegExp(`(?<![\\p{L}\\p{N}])${escapeRegExp(k)}(?![\\p{L}\\p{N}])`, 'iu'),
    })),
    ...cfg.regex.map((r) => ({ label: r, re: new RegExp(r, 'iu') })),
  ];
  return (text) => patterns.filter((p) => p.re.test(text)).map((p) => p.label);
}

/** Keyword, phrase and regex deny-lists on the prompt, the answer and the streamed answer. */
export const rulesPlugin: PluginDefinition<RulesConfig> = {
  id: 'rules',
  description: 'Keyword and regex deny-lists on input and output, streaming included',
  configSchema: RulesConfigSchema,
  defaultFailMode: 'closed',
  create(cfg) {
    const match = matcher(cfg);
    const outcome = (texts: string[]): CheckOutcome<never> => {
      const hits = [...new Set(texts.flatMap(match))];
      return hits.length
        ? { check: 'denylist', verdict: cfg.action, data: { matched: hits } }
        : { check: 'denylist', verdict: 'pass' };
    };
    return {
      onRequest: cfg.input ? async ({ body }) => outcome(requestTexts(body)) : undefined,
      onResponse: cfg.output ? async ({ response }) => outcome(responseTexts(response)) : undefined,
      onStreamChunk: cfg.output
        ? async ({ event }) => {
            if (event.chunk === null || !event.delta) return [];
            const from = Math.max(0, event.text.length - event.delta.length - cfg.streamOverlap);
            return outcome([event.text.slice(from)]);
          }
        : undefined,
    };
  },
};
