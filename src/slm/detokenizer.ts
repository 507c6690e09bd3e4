import type { TextTokenizer } from './tokenizer.js';

/**
 * Turns generated ids into text incrementally, in constant time per token: each step decodes only a short window
 * and emits what it adds to the window's previous text. A window rather than the lone new token, because decoders
 * such as Metaspace drop a leading space at the start of what they decode; a trailing U+FFFD waits for the rest of
 * its multi-byte character. (The same scheme as Hugging Face's text-generation-inference.)
 */
export class Detokenizer {
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  text = '';

  constructor(private readonly tokenizer: TextTokenizer) {}

  /** Adds one id; returns the full text so far. */
  push(id: number): string {
    this.ids.push(id);
    return this.advance(false);
  }

  /**
   * The full text once generation has ended: what push held back as an unfinished multi-byte character is given
   * too (as U+FFFD, as a one-shot decode of the ids gives it), so streamed text equals the decode of the ids.
   */
  finish(): string {
    return this.advance(true);
  }

  private advance(final: boolean): string {
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const next = this.tokenizer.decode(this.ids.slice(this.prefixOffset));
    if (next.length > prefix.length && (final || !next.endsWith('\uFFFD'))) {
      this.text += next.slice(prefix.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.ids.length;
    }
    return this.text;
  }
}
