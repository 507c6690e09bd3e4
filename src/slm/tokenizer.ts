import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import type { ModelFolder } from './folder.js';
import { ModelError } from './folder.js';

export interface ChatMessageInput {
  role: string;
  content: string;
}

const tokenText = (v: unknown): string | undefined =>
  typeof v === 'string'
    ? v
    : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string'
      ? (v as { content: string }).content
      : undefined;

/** GPT-2's byte-to-printable-character table, inverted: how byte-level BPE vocabularies spell raw bytes. */
const BYTE_OF_CHAR: ReadonlyMap<string, number> = (() => {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = [...bytes];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  return new Map(bytes.map((b, i) => [String.fromCodePoint(chars[i] as number), b]));
})();

/** The ByteLevel pre-tokenizer's split (GPT-2's pattern), as @huggingface/tokenizers applies it. */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const CHUNK_MEMO_SIZE = 50_000;

/**
 * Whether ids can be computed chunk by chunk: no normalizer, a lone ByteLevel pre-tokenizer splitting by GPT-2's
 * pattern, a BPE model, and a post-processor that adds no tokens. Anything else goes through the library whole.
 */
function chunkable(json: Record<string, unknown>): boolean {
  const pre = json.pre_tokenizer as { type?: string; add_prefix_space?: boolean; use_regex?: boolean } | null;
  const post = json.post_processor as { type?: string } | null | undefined;
  const model = json.model as { type?: string; dropout?: unknown } | undefined;
  return (
    json.normalizer == null &&
    pre?.type === 'ByteLevel' &&
    pre.add_prefix_space === false &&
    pre.use_regex !== false &&
    (post == null || post.type === 'ByteLevel') &&
    model?.type === 'BPE' &&
    model.dropout == null
  );
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** tokenizer.json through @huggingface/tokenizers, plus the folder's chat template through @huggingface/jinja. */
/** The model's chat template refused these messages. */
export class ChatTemplateError extends Error {
  constructor(reason: string) {
    super(`The model's chat template refused these messages: ${reason}`);
  }
}

/**
 * The chat template from tokenizer_config.json: a string, or (some models) a list of named templates, of which the
 * one named "default" serves plain chat, as in transformers.
 */
function chatTemplate(raw: unknown): string | undefined {
  if (typeof raw === 'string') return raw;
  if (!Array.isArray(raw)) return undefined;
  const named = raw.filter(
    (t): t is { name: string; template: string } =>
      typeof t === 'object' && t !== null && typeof t.name === 'string' && typeof t.template === 'string',
  );
  return (named.find((t) => t.name === 'default') ?? named[0])?.template;
}

export class TextTokenizer {
  private readonly tok: Tokenizer;
  private readonly template: Template | undefined;
  private readonly specials: Record<string, string | undefined>;
  readonly vocabSize: number;
  readonly paddingSide: 'left' | 'right';
  readonly padId: number;
  /** Ids of added special tokens, never shown in decoded text. */
  readonly specialIds: ReadonlySet<number>;
  private readonly byteLevel: boolean;
  private readonly texts: (string | undefined)[] = [];
  /** Chunk-wise encoding, when the tokenizer allows it (see `chunkable`); `specials` finds added tokens' text. */
  private readonly chunked: { specials: RegExp; memo: Map<string, number[]> } | undefined;

  constructor(folder: ModelFolder) {
    const cfg = folder.tokenizerConfig;
    try {
      this.tok = new Tokenizer(folder.tokenizerJson, cfg);
    } catch (err) {
      throw new ModelError(folder.dir, `tokenizer.json could not be loaded (${(err as Error).message})`);
    }
    this.specials = {
      bos_token: tokenText(cfg.bos_token),
      eos_token: tokenText(cfg.eos_token),
      pad_token: tokenText(cfg.pad_token),
      unk_token: tokenText(cfg.unk_token),
    };
    const template = chatTemplate(cfg.chat_template);
    this.template = template ? new Template(template) : undefined;
    this.vocabSize = this.tok.get_vocab(true).size;
    this.paddingSide = cfg.padding_side === 'right' ? 'right' : 'left';
    const pad = this.specials.pad_token ? this.tok.token_to_id(this.specials.pad_token) : undefined;
    this.padId = pad ?? folder.config.pad_token_id ?? 0;
    const decoder = (folder.tokenizerJson as { decoder?: { type?: string } }).decoder;
    this.byteLevel = decoder?.type === 'ByteLevel';
    this.specialIds = new Set([...this.tok.get_added_tokens_decoder()].filter(([, t]) => t.special).map(([id]) => id));
    if (chunkable(folder.tokenizerJson as Record<string, unknown>)) {
      const added = [...this.tok.get_added_tokens_decoder().values()].map((t) => t.content).filter(Boolean);
      // Text holding an added token's content is split around it by the library first: that text goes there whole.
      const specials = added.length ? new RegExp(added.map(escapeRegex).join('|')) : /(?!)/;
      this.chunked = { specials, memo: new Map() };
    }
  }

  get hasChatTemplate(): boolean {
    return this.template !== undefined;
  }

  encode(text: string, addSpecialTokens = false): number[] {
    const fast = this.chunked;
    const chunks = fast && !fast.specials.test(text) ? text.match(GPT2_SPLIT) : null;
    if (!fast || !chunks) return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
    // Byte-level BPE encodes each pre-tokenizer chunk on its own, so ids per chunk can be remembered: the library
    // spends ~0.5 ms on a 650-character prompt (a byte-to-character string per chunk), which the guard pays on every
    // request. Same ids by construction; test/slm.runtime.test.ts checks them against the library.
    const out: number[] = [];
    for (const c of chunks) {
      let ids = fast.memo.get(c);
      if (ids === undefined) {
        const fresh: number[] = this.tok.encode(c, { add_special_tokens: false }).ids;
        if (fast.memo.size >= CHUNK_MEMO_SIZE) fast.memo.clear();
        fast.memo.set(c, fresh);
        ids = fresh;
      }
      for (const id of ids) out.push(id);
    }
    return out;
  }

  decode(ids: number[], skipSpecial = true): string {
    if (ids.length === 0) return '';
    return this.tok.decode(ids, { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: false });
  }

  /** The text of one token (as the model sees it, after byte-level decoding). */
  tokenText(id: number): string {
    // Logprobs answers spell out up to 20 alternatives per position, so this is hot: each id is decoded once.
    const known = this.texts[id];
    if (known !== undefined) return known;
    const text = this.tok.decode([id], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    if (id >= 0 && id < this.vocabSize) this.texts[id] = text;
    return text;
  }

  /**
   * The raw bytes of one token: with byte-level BPE a token can be part of a multi-byte character, which text alone
   * cannot show (OpenAI's logprobs carry these bytes for that reason).
   */
  tokenBytes(id: number): number[] {
    const raw = this.tok.id_to_token(id);
    if (raw === undefined) return [];
    if (!this.byteLevel || this.specialIds.has(id)) return [...Buffer.from(this.tokenText(id), 'utf8')];
    const out: number[] = [];
    for (const ch of raw) {
      const b = BYTE_OF_CHAR.get(ch);
      if (b === undefined) return [...Buffer.from(this.tokenText(id), 'utf8')];
      out.push(b);
    }
    return out;
  }

  tokenId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /**
   * Renders messages with the model's chat template; without one, a plain "role: content" transcript. A template that
   * refuses the conversation (raise_exception: a system role it does not support, roles that do not alternate) throws
   * ChatTemplateError with the template's own words.
   */
  applyChatTemplate(messages: ChatMessageInput[], addGenerationPrompt = true): string {
    if (!this.template) {
      return `${messages.map((m) => `${m.role}: ${m.content}`).join('\n')}${addGenerationPrompt ? '\nassistant:' : ''}`;
    }
    try {
      return this.template.render({ messages, add_generation_prompt: addGenerationPrompt, ...this.specials });
    } catch (err) {
      throw new ChatTemplateError((err as Error).message);
    }
  }
}
