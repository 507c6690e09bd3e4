import { setImmediate as nextTurn } from 'node:timers/promises';
import type { CheckOutcome, JsonObject, PluginDefinition, PluginHooks, RequestContext } from '../types.js';
import { DETECTOR_BY_NAME, DETECTORS, type DetectorName, detect, type Finding } from './detectors/index.js';
import { type PrivacyAction, type PrivacyConfig, PrivacyConfigSchema } from './schema.js';
import { StreamRestorer, Vault } from './vault.js';

export { detect } from './detectors/index.js';
export { type PrivacyConfig, PrivacyConfigSchema } from './schema.js';

/** What one request keeps in `ctx.state` (never logged): the map, and the stream's held-back text. */
interface PrivacyState {
  vault: Vault;
  channels: Map<string, StreamRestorer>;
  /** id, object, created, model of the stream, for chunks made at its end. */
  base?: JsonObject;
  restored: number;
}

/** Gets one text (`json`: it is JSON, as tool-call arguments are) and returns it, rewritten or not. */
type TextFn = (text: string, json: boolean) => string;

/**
 * Calls `f` on every text of a request that the config says to scan, always in the same order: chat message content
 * (strings and text parts) and assistant tool-call (and legacy function-call) arguments, or a completion's prompt and
 * suffix. Returns a copy with the rewritten texts if any changed, else the body itself.
 */
function mapRequestTexts(body: JsonObject, cfg: PrivacyConfig, roles: ReadonlySet<string>, f: TextFn): JsonObject {
  if (Array.isArray(body.messages)) {
    const messages = body.messages as unknown[];
    let changed = false;
    const out = messages.map((m, i) => {
      if (!isObject(m) || !roles.has(String(m.role))) return m;
      if (cfg.lastMessageOnly && i !== messages.length - 1) return m;
      let next = m;
      if (typeof m.content === 'string') {
        const t = f(m.content, false);
        if (t !== m.content) next = { ...next, content: t };
      } else if (Array.isArray(m.content)) {
        let partsChanged = false;
        const parts = m.content.map((p) => {
          if (!isObject(p) || typeof p.text !== 'string') return p;
          const t = f(p.text, false);
          if (t === p.text) return p;
          partsChanged = true;
          return { ...p, text: t };
        });
        if (partsChanged) next = { ...next, content: parts };
      }
      if (cfg.toolArguments && Array.isArray(m.tool_calls)) {
        let callsChanged = false;
        const calls = m.tool_calls.map((c) => {
          const fn = isObject(c) && isObject(c.function) ? c.function : undefined;
          if (!fn || typeof fn.arguments !== 'string') return c;
          const t = f(fn.arguments, true);
          if (t === fn.arguments) return c;
          callsChanged = true;
          return { ...(c as JsonObject), function: { ...fn, arguments: t } };
        });
        if (callsChanged) next = { ...next, tool_calls: calls };
      }
      // The deprecated single function call carries arguments the same way (restoreResponse handles it too).
      if (cfg.toolArguments && isObject(m.function_call) && typeof m.function_call.arguments === 'string') {
        const t = f(m.function_call.arguments, true);
        if (t !== m.function_call.arguments) next = { ...next, function_call: { ...m.function_call, arguments: t } };
      }
      if (next !== m) changed = true;
      return next;
    });
    return changed ? { ...body, messages: out } : body;
  }
  if (!cfg.completions) return body;
  let next = body;
  const p = body.prompt;
  if (typeof p === 'string') {
    const t = f(p, false);
    if (t !== p) next = { ...next, prompt: t };
  } else if (Array.isArray(p) && p.some((x) => typeof x === 'string')) {
    const out = p.map((x) => (typeof x === 'string' ? f(x, false) : x));
    if (out.some((x, i) => x !== p[i])) next = { ...next, prompt: out };
  }
  if (typeof body.suffix === 'string') {
    const t = f(body.suffix, false);
    if (t !== body.suffix) next = { ...next, suffix: t };
  }
  return next;
}

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A value found inside JSON text (tool-call arguments) is kept decoded, so it can be re-escaped on the way back. */
function decodeJsonString(raw: string): string {
  if (!raw.includes('\\')) return raw;
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return raw;
  }
}

/** The answer with every assigned placeholder restored: message content, refusals, tool-call arguments, text. */
function restoreResponse(vault: Vault, response: JsonObject): { response: JsonObject; count: number } {
  if (!Array.isArray(response.choices)) return { response, count: 0 };
  let count = 0;
  const r = (text: unknown, json = false): unknown => {
    if (typeof text !== 'string') return text;
    const out = vault.restore(text, json);
    count += out.count;
    return out.text;
  };
  const choices = response.choices.map((c) => {
    if (!isObject(c)) return c;
    if (typeof c.text === 'string') return { ...c, text: r(c.text) };
    if (!isObject(c.message)) return c;
    const m = c.message;
    const message: JsonObject = { ...m };
    if (typeof m.content === 'string') message.content = r(m.content);
    else if (Array.isArray(m.content))
      message.content = m.content.map((p) =>
        isObject(p) && typeof p.text === 'string' ? { ...p, text: r(p.text) } : p,
      );
    if (typeof m.refusal === 'string') message.refusal = r(m.refusal);
    if (Array.isArray(m.tool_calls))
      message.tool_calls = m.tool_calls.map((t) =>
        isObject(t) && isObject(t.function)
          ? { ...t, function: { ...t.function, arguments: r(t.function.arguments, true) } }
          : t,
      );
    if (isObject(m.function_call))
      message.function_call = { ...m.function_call, arguments: r(m.function_call.arguments, true) };
    return { ...c, message };
  });
  return count ? { response: { ...response, choices }, count } : { response, count: 0 };
}

/** Choice keys a chunk may carry and still be dropped when all its text is held back. */
const TEXT_ONLY_CHOICE = new Set(['index', 'delta', 'text', 'finish_reason', 'logprobs']);

/**
 * Rewrites one streamed chunk: each choice's content (and each tool call's arguments) goes through its own
 * restorer. Returns the chunk to emit, or null when every choice's text is held back and the chunk says nothing
 * else (no role, no finish reason, no logprobs, no usage), so it can be dropped: its text leaves with a later one.
 */
function restoreChunk(st: PrivacyState, chunk: JsonObject, completions: boolean): JsonObject | null | undefined {
  if (!Array.isArray(chunk.choices) || chunk.choices.length === 0) return undefined;
  let changed = false;
  let droppable = chunk.usage == null;
  const channel = (key: string, json: boolean) => {
    let ch = st.channels.get(key);
    if (!ch) {
      ch = new StreamRestorer(st.vault, json);
      st.channels.set(key, ch);
    }
    return ch;
  };
  const choices = chunk.choices.map((c) => {
    if (!isObject(c)) {
      droppable = false;
      return c;
    }
    const idx = typeof c.index === 'number' ? c.index : 0;
    const finished = c.finish_reason != null;
    if (finished || c.logprobs != null || Object.keys(c).some((k) => !TEXT_ONLY_CHOICE.has(k))) droppable = false;
    if (completions) {
      const text = typeof c.text === 'string' ? c.text : '';
      const ch = channel(`${idx}`, false);
      let t = text ? ch.push(text) : '';
      if (finished) t += ch.flush();
      if (t !== '' || text === '') droppable = false;
      if (t === text) return c;
      changed = true;
      return { ...c, text: t };
    }
    const delta = isObject(c.delta) ? c.delta : {};
    if (Object.keys(delta).some((k) => k !== 'content')) droppable = false;
    let nd = delta;
    const content = typeof delta.content === 'string' ? delta.content : '';
    const ch = channel(`${idx}:content`, false);
    let t = content ? ch.push(content) : '';
    if (finished) t += ch.flush();
    if (t !== '' || content === '') droppable = false;
    if (t !== content) nd = { ...nd, content: t };
    let calls = Array.isArray(delta.tool_calls) ? (delta.tool_calls as unknown[]) : undefined;
    if (calls) {
      calls = calls.map((tc) => {
        const fn = isObject(tc) && isObject(tc.function) ? tc.function : undefined;
        if (!fn || typeof fn.arguments !== 'string') return tc;
        const tool = channel(`${idx}:tool:${Number((tc as JsonObject).index ?? 0)}`, true);
        const a = tool.push(fn.arguments);
        return a === fn.arguments ? tc : { ...(tc as JsonObject), function: { ...fn, arguments: a } };
      });
      if (calls.some((tc, i) => tc !== (delta.tool_calls as unknown[])[i])) nd = { ...nd, tool_calls: calls };
    }
    if (finished) {
      // Arguments still held back go out with the finishing chunk, as one more delta per tool call.
      const rest: JsonObject[] = [];
      for (const [key, tool] of st.channels)
        if (key.startsWith(`${idx}:tool:`) && tool.holding)
          rest.push({ index: Number(key.slice(`${idx}:tool:`.length)), function: { arguments: tool.flush() } });
      if (rest.length) nd = { ...nd, tool_calls: [...((nd.tool_calls as unknown[]) ?? []), ...rest] };
    }
    if (nd === delta) return c;
    changed = true;
    return { ...c, delta: nd };
  });
  if (droppable) return null;
  return changed ? { ...chunk, choices } : undefined;
}

/** At the end of a stream that stopped without a finish reason: what is still held back, as chunks of its own. */
function flushStream(st: PrivacyState, ctx: RequestContext): JsonObject[] {
  const base = st.base ?? {
    id: ctx.requestId,
    object: ctx.endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: ctx.model,
  };
  const out: JsonObject[] = [];
  for (const [key, ch] of st.channels) {
    if (!ch.holding) continue;
    const [idx, what, tool] = key.split(':');
    const index = Number(idx);
    const text = ch.flush();
    let choice: JsonObject;
    if (what === undefined) choice = { index, text, logprobs: null, finish_reason: null };
    else if (what === 'content') choice = { index, delta: { content: text }, finish_reason: null };
    else
      choice = {
        index,
        delta: { tool_calls: [{ index: Number(tool), function: { arguments: text } }] },
        finish_reason: null,
      };
    out.push({ ...base, choices: [choice] });
  }
  return out;
}

const YIELD_EVERY_CHARS = 256 * 1024;

let instances = 0;

/**
 * Detects emails, phone numbers, card numbers, IBANs, IP addresses, secrets and SSNs in what a request sends
 * upstream; redacts (placeholders like `[EMAIL_1]`), blocks or flags them per detector; restores the placeholders in
 * the answer, streamed or not. The map lives in the request's `ctx.state` only: reports carry counts.
 */
export const privacyPlugin: PluginDefinition<PrivacyConfig> = {
  id: 'privacy',
  description: 'Redacts PII and secrets before the prompt leaves, restores them in the answer (streaming included)',
  configSchema: PrivacyConfigSchema,
  defaultFailMode: 'closed',
  create(cfg) {
    const key = `privacy#${++instances}`;
    const action = (d: DetectorName): PrivacyAction => cfg.detectors[d].action;
    const enabled = new Set(DETECTORS.filter((d) => action(d) !== 'off'));
    const roles = new Set<string>(cfg.roles);

    const hooks: PluginHooks = {
      mutates: true,

      async onRequest({ ctx, body, signal }) {
        if (enabled.size === 0) return [];
        // First pass: find everything, so that a block stops the request before anything is assigned.
        const texts: string[] = [];
        mapRequestTexts(body, cfg, roles, (text) => {
          texts.push(text);
          return text;
        });
        const found: Finding[][] = [];
        const times = new Map<DetectorName, number>();
        let sinceYield = 0;
        for (const text of texts) {
          // Big requests give the event loop a turn now and then, so the plugin's timeout (and with it the fail
          // mode) can take effect, and the scan stops once it has.
          if (sinceYield > YIELD_EVERY_CHARS) {
            sinceYield = 0;
            await nextTurn();
          }
          if (signal.aborted) throw new Error('aborted');
          found.push(detect(text, enabled, times));
          sinceYield += text.length;
        }
        const tally = new Map<DetectorName, { count: number; categories: Record<string, number> }>();
        for (const f of found.flat()) {
          const t = tally.get(f.detector) ?? { count: 0, categories: {} };
          t.count++;
          t.categories[f.kind] = (t.categories[f.kind] ?? 0) + 1;
          tally.set(f.detector, t);
        }
        if (tally.size === 0) return { check: 'scan', verdict: 'pass', data: { found: 0 } };
        const outcome = (d: DetectorName, verdict: CheckOutcome['verdict']): CheckOutcome<JsonObject> => ({
          check: d,
          verdict,
          // Its own scan time, not the hook's: the hook reports one outcome per detector that found something.
          latencyMs: times.get(d) ?? 0,
          data: { action: action(d), ...tally.get(d) },
        });
        const blocks = [...tally.keys()].filter((d) => action(d) === 'block');
        if (blocks.length) return blocks.map((d) => outcome(d, 'block'));

        // Second pass: the same texts in the same order, rewritten.
        const vault = new Vault(cfg.placeholder, texts);
        let slot = 0;
        const redacted = mapRequestTexts(body, cfg, roles, (text, json) => {
          const findings = found[slot++] ?? [];
          let out = '';
          let pos = 0;
          for (const f of findings) {
            if (action(f.detector) !== 'redact') continue;
            const raw = text.slice(f.start, f.end);
            const label = DETECTOR_BY_NAME.get(f.detector)?.label ?? f.detector.toUpperCase();
            out += text.slice(pos, f.start) + vault.placeholder(label, json ? decodeJsonString(raw) : raw);
            pos = f.end;
          }
          return pos === 0 ? text : out + text.slice(pos);
        });
        const outcomes = [...tally.keys()].map((d) => {
          const o = outcome(d, action(d) === 'flag' ? 'flag' : 'pass');
          if (action(d) === 'redact') o.transformed = redacted;
          return o;
        });
        if (vault.size > 0) {
          ctx.state.set(key, { vault, channels: new Map(), restored: 0 } satisfies PrivacyState);
        }
        return outcomes;
      },
    };

    if (cfg.restore) {
      hooks.onResponse = async ({ ctx, response }) => {
        const st = ctx.state.get(key) as PrivacyState | undefined;
        if (!st) return [];
        const r = restoreResponse(st.vault, response);
        if (!r.count) return [];
        return { check: 'restore', verdict: 'pass', data: { restored: r.count }, transformed: r.response };
      };
      hooks.onStreamChunk = async ({ ctx, event }) => {
        const st = ctx.state.get(key) as PrivacyState | undefined;
        if (!st) return [];
        let transformed: JsonObject[] | undefined;
        if (event.chunk === null) {
          const tail = flushStream(st, ctx);
          if (tail.length) transformed = tail;
        } else {
          if (!st.base && Array.isArray(event.chunk.choices) && event.chunk.choices.length) {
            const { id, object, created, model, system_fingerprint } = event.chunk;
            st.base = { id, object, created, model, ...(system_fingerprint !== undefined && { system_fingerprint }) };
          }
          const out = restoreChunk(st, event.chunk, ctx.endpoint === 'completions');
          if (out === null) transformed = [];
          else if (out) transformed = [out];
        }
        if (!transformed) return [];
        st.restored = restoredSoFar(st);
        return {
          check: 'restore',
          verdict: 'pass',
          data: { restored: st.restored },
          transformed,
        };
      };
    }
    return hooks;
  },
};

const restoredSoFar = (st: PrivacyState) => [...st.channels.values()].reduce((n, c) => n + c.restored, 0);
