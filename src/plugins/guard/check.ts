import type { ChatMessageInput } from '../../slm/tokenizer.js';
import type { CheckOutcome } from '../types.js';

/** One guard check: the texts to judge (a request's messages, or an answer) and the conversation they belong to. */
export type GuardCheck = (texts: string[], conversation: ChatMessageInput[]) => Promise<CheckOutcome<never>>;
