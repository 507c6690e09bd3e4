import { LlamaGuard } from '../../guard/llamaGuard.js';
import { StreamWindows } from '../../guard/window.js';
import type { Classifier } from '../../slm/classifier.js';
import type { ChatMessageInput } from '../../slm/tokenizer.js';
import { contentText, requestTexts, responseTexts } from '../text.js';
import type { CheckOutcome, JsonObject, PluginDefinition, PluginEnv, RequestContext } from '../types.js';
import { type GuardConfig, GuardConfigSchema } from './schema.js';

type Check = (texts: string[], conversation: ChatMessageInput[]) => Promise<CheckOutcome<never>>;

/**
 * Long texts in overlapping pieces: a classifier reads a bounded number of tokens, and nothing past them may go
 * unchecked. Pieces of `size` characters overlap by a quarter, so text cut at one piece's edge is whole in the next.
 */
function pieces(texts: string[], size: number, max: number): { parts: string[]; truncated: boolean } {
  const parts: string[] = [];
  const step = Math.max(1, Math.floor((size * 3) / 4));
  for (const t of texts) {
    if (!t) continue;
    for (let at = 0; ; at += step) {
      parts.push(t.slice(at, at + size));
      if (at + size >= t.length) break;
    }
  }
  return { parts: parts.slice(0, max), truncated: parts.length > max };
}

const round = (x: number) => Math.round(x * 1e4) / 1e4;

async function loadFailing<T>(what: string, name: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    // A guard that cannot run must not let traffic through unchecked: the server does not start.
    throw new Error(`guard: ${what} model '${name}' cannot be loaded: ${(err as Error).message}`);
  }
}

function classifierCheck(c: Classifier, cfg: NonNullable<GuardConfig['classifier']>, g: GuardConfig): Check {
  const own = (c.folder.config as { tandem_threshold?: unknown }).tandem_threshold;
  const threshold = cfg.threshold ?? (typeof own === 'number' ? own : 0.5);
  const labels = new Set(cfg.labels ?? c.labels);
  // About 3 characters a token in English: a piece fits in what the model reads.
  const size = g.pieceChars ?? c.maxLength * 3;
  return async (texts) => {
    const { parts, truncated } = pieces(texts, size, g.maxPieces);
    if (parts.length === 0) return { check: 'classifier', verdict: 'pass' };
    const results = await c.classify(parts);
    const scores: Record<string, number> = {};
    for (const r of results)
      for (const [label, p] of Object.entries(r.scores)) scores[label] = Math.max(scores[label] ?? 0, p);
    const hit = Object.entries(scores)
      .filter(([l, p]) => labels.has(l) && p >= threshold)
      .map(([l]) => l);
    const data: JsonObject = {
      categories: hit,
      threshold,
      scores: Object.fromEntries(Object.entries(scores).map(([l, p]) => [l, round(p)])),
    };
    if (truncated) data.truncated = true;
    return { check: 'classifier', verdict: hit.length ? cfg.action : 'pass', data };
  };
}

function llamaGuardCheck(guard: LlamaGuard, cfg: NonNullable<GuardConfig['llamaGuard']>): Check {
  const wanted = cfg.categories ? new Set(cfg.categories) : undefined;
  return async (_texts, conversation) => {
    if (conversation.length === 0) return { check: 'llama_guard', verdict: 'pass' };
    const v = await guard.check(conversation);
    const categories = wanted ? v.categories.filter((c) => wanted.has(c)) : v.categories;
    const unsafe =
      (v.unsafe || v.pUnsafe >= cfg.threshold) && (!wanted || categories.length > 0 || v.categories.length === 0);
    return {
      check: 'llama_guard',
      verdict: unsafe ? cfg.action : 'pass',
      data: { categories, p_unsafe: round(v.pUnsafe), answer: v.raw.slice(0, 80) },
    };
  };
}

function conversationOf(body: JsonObject): ChatMessageInput[] {
  if (Array.isArray(body.messages))
    return (body.messages as JsonObject[]).map((m) => ({ role: String(m.role), content: contentText(m.content) }));
  return requestTexts(body).map((content) => ({ role: 'user', content }));
}

const runAll = async (checks: Check[], texts: string[], conversation: ChatMessageInput[]) =>
  Promise.all(checks.map((c) => c(texts, conversation)));

interface StreamState {
  windows: StreamWindows;
  held: JsonObject[];
  /** as-you-go: checks started, their outcomes once known. */
  pending: Promise<CheckOutcome<never>[]>[];
  done: CheckOutcome<never>[][];
}

/** Safety checks by local models on the prompt, the answer and the stream. */
export const guardPlugin: PluginDefinition<GuardConfig> = {
  id: 'guard',
  description: 'Safety classifier and Llama Guard-format models on input, output and streams',
  configSchema: GuardConfigSchema,
  defaultFailMode: 'closed',
  async create(cfg, env: PluginEnv) {
    const models = env.models;
    if (!models) throw new Error('guard: runs only on a route of a Tandem server');
    const checks: Check[] = [];
    if (cfg.classifier) {
      const name = cfg.classifier.model;
      const c = await loadFailing('classifier', name, () => models.classifier(name));
      checks.push(classifierCheck(c, cfg.classifier, cfg));
    }
    if (cfg.llamaGuard) {
      const name = cfg.llamaGuard.model;
      const lm = await loadFailing('Llama Guard', name, async () => (await models.causalLM(name)).lm);
      checks.push(llamaGuardCheck(new LlamaGuard(lm), cfg.llamaGuard));
    }
    if (checks.length === 0) throw new Error('guard: configure `classifier`, `llamaGuard` or both');

    const state = (ctx: RequestContext): StreamState => {
      let s = ctx.state.get('guard') as StreamState | undefined;
      if (!s) {
        s = { windows: new StreamWindows(cfg.stream.every, cfg.stream.overlap), held: [], pending: [], done: [] };
        ctx.state.set('guard', s);
      }
      return s;
    };
    const answerConversation = (ctx: RequestContext, text: string): ChatMessageInput[] => [
      ...((ctx.state.get('guard.conversation') as ChatMessageInput[] | undefined) ?? []),
      { role: 'assistant', content: text },
    ];

    return {
      onRequest: async ({ ctx, body }) => {
        const conversation = conversationOf(body);
        ctx.state.set('guard.conversation', conversation);
        if (!cfg.input) return [];
        return runAll(checks, requestTexts(body), conversation);
      },
      onResponse: cfg.output
        ? async ({ ctx, response }) => {
            const texts = responseTexts(response);
            return runAll(checks, texts, answerConversation(ctx, texts[0] ?? ''));
          }
        : undefined,
      onStreamChunk: cfg.output
        ? async ({ ctx, event }) => {
            const s = state(ctx);
            const final = event.chunk === null;
            const window = s.windows.push(event.text, final);
            const check = (text: string) => runAll(checks, [text], answerConversation(ctx, text));
            if (cfg.stream.mode === 'hold') {
              if (event.chunk) s.held.push(event.chunk);
              if (window === undefined) {
                // Chunks without new text (finish, usage) behind text already checked go straight out.
                const out = s.windows.unchecked === 0 ? s.held.splice(0) : [];
                return [{ check: 'stream', verdict: 'pass', transformed: out }];
              }
              const outcomes = await check(window);
              const release = s.held;
              s.held = [];
              return outcomes.some((o) => o.verdict === 'block')
                ? outcomes
                : [...outcomes, { check: 'stream', verdict: 'pass', transformed: release }];
            }
            // as-you-go: the chunk goes out now; a window's result stops the stream at the first chunk after it.
            if (window !== undefined) {
              const p = check(window);
              s.pending.push(p);
              p.then((o) => s.done.push(o)).catch(() => {});
            }
            if (final) return (await Promise.all(s.pending)).flat();
            const finished = s.done.splice(0).flat();
            return finished;
          }
        : undefined,
    };
  },
};
