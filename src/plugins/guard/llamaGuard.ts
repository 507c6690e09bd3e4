import type { LlamaGuard } from '../../guard/llamaGuard.js';
import { type GuardCheck, round4 } from './check.js';
import type { GuardConfig } from './schema.js';

/** A Llama Guard-format model on the conversation; verdict from its answer or from P(unsafe) of the first token. */
export function llamaGuardCheck(
  guard: LlamaGuard,
  cfg: NonNullable<GuardConfig['llamaGuard']>,
  modelThreshold: number | undefined,
): GuardCheck {
  const wanted = cfg.categories ? new Set(cfg.categories) : undefined;
  const threshold = cfg.threshold ?? modelThreshold;
  return async (_texts, conversation) => {
    if (conversation.length === 0) return { check: 'llama_guard', verdict: 'pass' };
    const v = await guard.check(conversation);
    const categories = wanted ? v.categories.filter((c) => wanted.has(c)) : v.categories;
    const flagged = threshold === undefined ? v.unsafe : v.pUnsafe >= threshold;
    // Categories narrow the verdict only when the answer names some: an unsafe answer without codes still counts.
    const unsafe = flagged && (!wanted || categories.length > 0 || v.categories.length === 0);
    return {
      check: 'llama_guard',
      verdict: unsafe ? cfg.action : 'pass',
      data: {
        categories,
        p_unsafe: round4(v.pUnsafe),
        threshold: threshold ?? 'answer',
        answer: v.raw.slice(0, 80),
      },
    };
  };
}
