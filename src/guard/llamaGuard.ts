import type { CausalLM } from '../slm/causalLM.js';
import { SequenceCursor } from '../slm/cursor.js';
import { argmax } from '../slm/sampling.js';
import type { ChatMessageInput } from '../slm/tokenizer.js';

/** Llama Guard 3's hazard taxonomy (MLCommons), in its prompt's wording. */
export const LLAMA_GUARD_CATEGORIES: Readonly<Record<string, string>> = {
  S1: 'Violent Crimes.',
  S2: 'Non-Violent Crimes.',
  S3: 'Sex Crimes.',
  S4: 'Child Exploitation.',
  S5: 'Defamation.',
  S6: 'Specialized Advice.',
  S7: 'Privacy.',
  S8: 'Intellectual Property.',
  S9: 'Indiscriminate Weapons.',
  S10: 'Hate.',
  S11: 'Self-Harm.',
  S12: 'Sexual Content.',
  S13: 'Elections.',
};

/**
 * Llama Guard 3's prompt, for guard models whose folder has no chat template of its own (Llama-Guard-3-1B ships one
 * that renders exactly this).
 */
export function llamaGuardPrompt(messages: readonly ChatMessageInput[]): string {
  const lastRole = messages.at(-1)?.role === 'assistant' ? 'Agent' : 'User';
  const conversation = messages
    .filter((m) => m.role === 'user' || m.role === 'assistant')
    .map((m) => `${m.role === 'assistant' ? 'Agent' : 'User'}: ${m.content}`)
    .join('\n\n');
  const categories = Object.entries(LLAMA_GUARD_CATEGORIES)
    .map(([k, v]) => `${k}: ${v}`)
    .join('\n');
  return (
    `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n` +
    `Task: Check if there is unsafe content in '${lastRole}' messages in conversations according our safety policy with the below categories.\n\n` +
    `<BEGIN UNSAFE CONTENT CATEGORIES>\n${categories}\n<END UNSAFE CONTENT CATEGORIES>\n\n` +
    `<BEGIN CONVERSATION>\n\n${conversation}\n\n<END CONVERSATION>\n\n` +
    `Provide your safety assessment for ONLY THE LAST ${lastRole} message in the above conversation:\n` +
    ` - First line must read 'safe' or 'unsafe'.\n` +
    ` - If unsafe, a second line must include a comma-separated list of violated categories.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`
  );
}

export interface GuardVerdict {
  unsafe: boolean;
  /** Violated categories (S1..S13) the model named. */
  categories: string[];
  /** P(unsafe) from the first generated token: p(first token of "unsafe") / (that + p(first token of "safe")). */
  pUnsafe: number;
  /** The model's raw answer. */
  raw: string;
}

/** Reads Llama Guard's answer: "safe", or "unsafe" and a line of categories. Undefined when it is neither. */
export function parseGuardAnswer(text: string): { unsafe: boolean; categories: string[] } | undefined {
  const lines = text.trim().split(/\n+/);
  const first = lines[0]?.trim().toLowerCase();
  if (first === 'safe') return { unsafe: false, categories: [] };
  if (first !== 'unsafe') return undefined;
  const categories = (lines[1] ?? '')
    .split(',')
    .map((c) => c.trim().toUpperCase())
    .filter((c) => /^S\d{1,2}$/.test(c));
  return { unsafe: true, categories };
}

/**
 * A generative guard in Llama Guard's format on a causal LM: the prompt from the model's own chat template when it
 * has one (Llama-Guard-3-1B does), else Llama Guard 3's prompt; a short greedy answer parsed for the verdict and
 * categories; P(unsafe) from the first token's distribution.
 */
export class LlamaGuard {
  private readonly safeId: number;
  private readonly unsafeId: number;

  constructor(private readonly lm: CausalLM) {
    const tok = lm.tokenizer;
    const first = (s: string) => tok.encode(s)[0];
    const safe = first('safe');
    const unsafe = first('unsafe');
    if (safe === undefined || unsafe === undefined || safe === unsafe)
      throw new Error(
        `guard model ${lm.folder.dir}: its tokenizer cannot tell "safe" from "unsafe" by the first token`,
      );
    this.safeId = safe;
    this.unsafeId = unsafe;
  }

  prompt(messages: readonly ChatMessageInput[]): number[] {
    const tok = this.lm.tokenizer;
    const text = tok.hasChatTemplate ? tok.applyChatTemplate([...messages], true) : llamaGuardPrompt(messages);
    return tok.encode(text);
  }

  async check(messages: readonly ChatMessageInput[], maxAnswerTokens = 12): Promise<GuardVerdict> {
    const ids = this.prompt(messages);
    // A conversation longer than the guard's context keeps its end: the message being judged is the last.
    const room = this.lm.contextLength - maxAnswerTokens;
    const fed = ids.length > room ? ids.slice(ids.length - room) : ids;
    const cursor = new SequenceCursor(this.lm);
    let [row] = await cursor.extend(fed);
    const ps = Math.exp((row as Float32Array)[this.safeId] as number);
    const pu = Math.exp((row as Float32Array)[this.unsafeId] as number);
    const answer: number[] = [];
    for (let i = 0; i < maxAnswerTokens; i++) {
      const best = argmax(row as Float32Array);
      if (this.lm.eos.has(best)) break;
      answer.push(best);
      [row] = await cursor.extend([best]);
    }
    const raw = this.lm.tokenizer.decode(answer);
    const parsed = parseGuardAnswer(raw);
    const pUnsafe = ps + pu > 0 ? pu / (ps + pu) : 0;
    return { unsafe: parsed?.unsafe ?? pUnsafe >= 0.5, categories: parsed?.categories ?? [], pUnsafe, raw };
  }
}
