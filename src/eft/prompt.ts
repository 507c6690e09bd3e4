import type { ChatMessageInput } from '../slm/tokenizer.js';

/**
 * The text the base models (large and small) see for a chat: the messages' contents, without any template, as in
 * proxy-tuning; only the fine-tuned experts get the chat template.
 */
export function rawChatText(messages: readonly ChatMessageInput[]): string {
  return `${messages
    .map((m) => m.content)
    .filter((c) => c.length > 0)
    .join('\n\n')}\n`;
}
