import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUILTIN_MODELS_DIR } from '../slm/registry.js';

/** The model `npm start` serves as `tandem-chat` when nothing else is configured. */
export const EMBEDDED_CHAT_MODEL = 'tandem-large-chat';

/** `tandem-eft`: tandem-large-base up-scaled by what fine-tuning taught the small model (small chat minus small base). */
const EMBEDDED_EFT = { large: 'tandem-large-base', expert: 'tandem-small-chat', base: 'tandem-small-base' };

interface EmbeddedRoute {
  model: string;
  upstream: string;
  plugins?: { use: string; config: Record<string, unknown> }[];
}

/**
 * With no upstream and no routes configured, Tandem serves its own models in process: `tandem-chat` (the
 * chat-capable family model) plus every shipped causal LM under its own name. So `npm start` works offline.
 */
export function embeddedDefault(modelsDir = BUILTIN_MODELS_DIR): {
  upstreams: Record<string, { url: string }>;
  routes: EmbeddedRoute[];
} {
  const names = existsSync(modelsDir)
    ? readdirSync(modelsDir).filter(
        (n) => existsSync(join(modelsDir, n, 'config.json')) && !isClassifier(join(modelsDir, n)),
      )
    : [];
  const upstreams: Record<string, { url: string }> = {};
  const routes: EmbeddedRoute[] = [];
  if (names.includes(EMBEDDED_CHAT_MODEL)) {
    upstreams['tandem-chat'] = { url: `local:${EMBEDDED_CHAT_MODEL}` };
    routes.push({ model: 'tandem-chat', upstream: 'tandem-chat' });
  }
  for (const n of names) {
    upstreams[n] = { url: `local:${n}` };
    routes.push({ model: n, upstream: n });
  }
  if (Object.values(EMBEDDED_EFT).every((n) => names.includes(n))) {
    routes.push({
      model: 'tandem-eft',
      upstream: EMBEDDED_EFT.large,
      plugins: [
        { use: 'eft', config: { experts: [{ model: EMBEDDED_EFT.expert }], base: EMBEDDED_EFT.base, beta: 1 } },
      ],
    });
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
