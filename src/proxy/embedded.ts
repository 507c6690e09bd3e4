import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_MODELS_DIR } from '../slm/registry.js';

/** The model `npm start` serves as `tandem-chat` when nothing else is configured. */
export const EMBEDDED_CHAT_MODEL = 'tandem-large-chat';

/**
 * With no upstream and no routes configured, Tandem serves its own models in process: `tandem-chat` (the
 * chat-capable family model) plus every shipped causal LM under its own name. So `npm start` works offline.
 */
export function embeddedDefault(modelsDir = BUILTIN_MODELS_DIR): {
  upstreams: Record<string, { url: string }>;
  routes: { model: string; upstream: string }[];
} {
  const names = existsSync(modelsDir)
    ? readdirSync(modelsDir).filter(
        (n) => existsSync(join(modelsDir, n, 'config.json')) && !isClassifier(join(modelsDir, n)),
      )
    : [];
  const upstreams: Record<string, { url: string }> = {};
  const routes: { model: string; upstream: string }[] = [];
  if (names.includes(EMBEDDED_CHAT_MODEL)) {
    upstreams['tandem-chat'] = { url: `local:${EMBEDDED_CHAT_MODEL}` };
    routes.push({ model: 'tandem-chat', upstream: 'tandem-chat' });
  }
  for (const n of names) {
    upstreams[n] = { url: `local:${n}` };
    routes.push({ model: n, upstream: n });
  }
  return { upstreams, routes };
}

function isClassifier(dir: string): boolean {
  try {
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { architectures?: string[] };
    return /ForSequenceClassification$/.test(cfg.architectures?.[0] ?? '');
  } catch {
    return false;
  }
}
