import { LlamaGuard } from '../../guard/llamaGuard.js';
import { StreamWindows } from '../../guard/window.js';
import type { ChatMessageInput } from '../../slm/tokenizer.js';
import { messageTexts, requestTexts, responseTexts } from '../text.js';
import type { CheckOutcome, JsonObject, PluginDefinition, PluginEnv, RequestContext } from '../types.js';
import type { GuardCheck } from './check.js';
import { classifierCheck } from './classifier.js';
import { llamaGuardCheck } from './llamaGuard.js';
import { type GuardConfig, GuardConfigSchema } from './schema.js';

async function loadFailing<T>(what: string, name: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (err) {
    // A guard that cannot run must not let traffic through unchecked: the server does not start.
    throw new Error(`guard: ${what} model '${name}' cannot be loaded: ${(err as Error).message}`);
  }
}

/**
 * A request's texts for the classifier and, when a Llama Guard check needs it, its conversation: one pass over the
 * messages serves both (tool-call arguments are parsed once).
 */
function requestParts(body: JsonObject, conversation: boolean): { texts: string[]; conversation: ChatMessageInput[] } {
  if (!Array.isArray(body.messages)) {
    const texts = requestTexts(body);
    return { texts, conversation: conversation ? texts.map((content) => ({ role: 'user', content })) : [] };
  }
  const messages = (body.messages as JsonObject[]).map((m) => ({ role: String(m?.role), texts: messageTexts(m) }));
  return {
    texts: messages.flatMap((m) => m.texts),
    conversation: conversation
      ? messages.map((m) => ({ role: m.role, content: m.texts.filter(Boolean).join('\n') }))
      : [],
  };
}

const runAll = async (checks: GuardCheck[], texts: string[], conversation: ChatMessageInput[]) =>
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
    const checks: GuardCheck[] = [];
    if (cfg.classifier) {
      const name = cfg.classifier.model;
      const c = await loadFailing('classifier', name, () => models.classifier(name));
      checks.push(classifierCheck(c, cfg));
    }
    if (cfg.llamaGuard) {
      const name = cfg.llamaGuard.model;
      const lm = await loadFailing('Llama Guard', name, async () => (await models.causalLM(name)).lm);
      const own = (lm.folder.config as { tandem_threshold?: unknown }).tandem_threshold;
      checks.push(llamaGuardCheck(new LlamaGuard(lm), cfg.llamaGuard, typeof own === 'number' ? own : undefined));
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
        // The conversation is only Llama Guard's input; the classifier reads the texts.
        const parts = requestParts(body, cfg.llamaGuard !== undefined);
        ctx.state.set('guard.conversation', parts.conversation);
        if (!cfg.input) return [];
        return runAll(checks, parts.texts, parts.conversation);
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
