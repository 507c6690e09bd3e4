import { z } from 'zod';
import { badRequest, type HttpError } from './errors.js';
import { formatPath } from './loadConfig.js';

/**
 * Request bodies. Known fields are type-checked so a client learns of its mistake from Tandem with the field named;
 * unknown fields pass through untouched (loose objects) so new upstream features keep working. Ranges are only
 * those every OpenAI-compatible server shares: upstream-specific limits stay the upstream's to enforce.
 */

const nullable = <T extends z.ZodType>(t: T) => t.nullable().optional();

const ContentPart = z.looseObject({ type: z.string() });
const Message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(ContentPart), z.null()]).optional(),
  name: z.string().optional(),
  tool_calls: z.array(z.looseObject({})).optional(),
  tool_call_id: z.string().optional(),
});

const Stop = nullable(z.union([z.string(), z.array(z.string())]));
const TandemOptions = z.looseObject({}).optional();

const Common = {
  model: z
    .string({ error: (i) => (i.input === undefined ? 'you must provide a model parameter' : 'model must be a string') })
    .min(1, 'model must not be empty'),
  stream: nullable(z.boolean()),
  stream_options: nullable(z.looseObject({ include_usage: z.boolean().optional() })),
  temperature: nullable(z.number().min(0)),
  top_p: nullable(z.number().min(0).max(1)),
  // vLLM's and llama.cpp's sampling extensions, which the local provider and EFT honour too.
  top_k: nullable(z.number().int()),
  min_p: nullable(z.number().min(0).max(1)),
  n: nullable(z.number().int().min(1)),
  stop: Stop,
  presence_penalty: nullable(z.number().min(-2).max(2)),
  frequency_penalty: nullable(z.number().min(-2).max(2)),
  seed: nullable(z.number().int()),
  user: z.string().optional(),
  logit_bias: nullable(z.record(z.string(), z.number())),
  tandem: TandemOptions,
};

export const ChatRequestSchema = z.looseObject({
  ...Common,
  messages: z
    .array(Message, {
      error: (i) => (i.input === undefined ? 'you must provide a messages parameter' : 'messages must be an array'),
    })
    .min(1, 'messages must not be empty'),
  max_tokens: nullable(z.number().int().min(1)),
  max_completion_tokens: nullable(z.number().int().min(1)),
  logprobs: nullable(z.boolean()),
  top_logprobs: nullable(z.number().int().min(0).max(20)),
  tools: z.array(z.looseObject({ type: z.string() })).optional(),
  tool_choice: z.union([z.string(), z.looseObject({})]).optional(),
  response_format: z.looseObject({ type: z.string() }).optional(),
});

const Prompt = z.union([
  z.string(),
  z.array(z.string()).min(1),
  z.array(z.number().int().min(0)).min(1),
  z.array(z.array(z.number().int().min(0)).min(1)).min(1),
]);

export const CompletionRequestSchema = z.looseObject({
  ...Common,
  prompt: z.unknown().superRefine((v, ctx) => {
    if (v === undefined) ctx.addIssue({ code: 'custom', message: 'you must provide a prompt parameter' });
    else if (!Prompt.safeParse(v).success)
      ctx.addIssue({ code: 'custom', message: 'prompt must be a string, an array of strings, or token ids' });
  }),
  // 0 is valid: with echo it scores a prompt without generating (EFT's speculative path relies on it).
  max_tokens: nullable(z.number().int().min(0)),
  logprobs: nullable(z.number().int().min(0).max(20)),
  echo: nullable(z.boolean()),
  suffix: nullable(z.string()),
  best_of: nullable(z.number().int().min(1)),
});

export type ChatRequest = z.infer<typeof ChatRequestSchema>;
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

export function parseRequest<T>(schema: z.ZodType<T>, body: unknown): T | HttpError {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    return badRequest('The request body must be a JSON object.', null, 'invalid_body');
  }
  const res = schema.safeParse(body);
  if (res.success) return res.data;
  const issue = res.error.issues[0];
  const param = issue?.path.length ? formatPath(issue.path) : null;
  if (issue?.message.startsWith('you must provide'))
    return badRequest(issue.message, param, 'missing_required_parameter');
  const message = issue ? (param ? `Invalid '${param}': ${issue.message}` : issue.message) : 'Invalid request';
  return badRequest(message, param, issue?.code === 'invalid_type' ? 'invalid_type' : 'invalid_value');
}
