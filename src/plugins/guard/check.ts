import type { ChatMessageInput } from '../../slm/tokenizer.js';
import type { CheckOutcome } from '../types.js';

/** One guard check: the texts to judge (a request's messages, or an answer) and the conversation they belong to. */
export type GuardCheck = (texts: string[], conversation: ChatMessageInput[]) => Promise<CheckOutcome<never>>;

/** Scores in reports: four decimals are plenty and keep the JSON short. */
export const round4 = (x: number) => Math.round(x * 1e4) / 1e4;
