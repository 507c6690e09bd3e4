import { createHash } from 'node:crypto';
import stringify from 'safe-stable-stringify';
import type { TextTokenizer } from '../slm/tokenizer.js';

/**
 * What decides how text becomes ids: the tokenizer model (vocabulary, merges) and its added tokens. Two folders
 * with the same fingerprint give the same ids, whatever else differs in their tokenizer files.
 */
export function tokenizerFingerprint(tokenizerJson: object): string {
  const t = tokenizerJson as { model?: unknown; added_tokens?: unknown; pre_tokenizer?: unknown };
  const text = stringify({ model: t.model, added: t.added_tokens, pre: t.pre_tokenizer }) ?? '';
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/**
 * Maps the tokens of an OpenAI logprobs answer back to ids: vLLM's `token_id:N` spelling when the server was asked
 * for it, else the token's bytes (chat logprobs carry them), else its text where only one id decodes to that text.
 * Ids it cannot tell apart are left out, and their mass counts as not covered.
 */
export class TokenIndex {
  private byBytes: Map<string, number> | undefined;
  private byText: Map<string, number> | undefined;

  constructor(private readonly tokenizer: TextTokenizer) {}

  id(token: string, bytes?: readonly number[] | null): number | undefined {
    const m = /^token_id:(\d+)$/.exec(token);
    if (m) return Number(m[1]);
    if (bytes && bytes.length > 0) {
      const byBytes = this.bytesMap();
      const found = byBytes.get(Buffer.from(bytes).toString('hex'));
      if (found !== undefined) return found;
    }
    const id = this.textMap().get(token);
    return id === undefined || id < 0 ? undefined : id;
  }

  private bytesMap(): Map<string, number> {
    if (!this.byBytes) {
      this.byBytes = new Map();
      for (let id = 0; id < this.tokenizer.vocabSize; id++) {
        const hex = Buffer.from(this.tokenizer.tokenBytes(id)).toString('hex');
        if (!this.byBytes.has(hex)) this.byBytes.set(hex, id);
      }
    }
    return this.byBytes;
  }

  private textMap(): Map<string, number> {
    if (!this.byText) {
      this.byText = new Map();
      for (let id = 0; id < this.tokenizer.vocabSize; id++) {
        const text = this.tokenizer.tokenText(id);
        // -1 marks text that more than one id decodes to.
        this.byText.set(text, this.byText.has(text) ? -1 : id);
      }
    }
    return this.byText;
  }
}
