import { join } from 'node:path';
import { BUILTIN_MODELS_DIR } from '../../src/slm/registry.js';

/** The project's own model family (models/): the tests run real inference on them. */
export const CAUSAL_FAMILY = [
  'tandem-large-base',
  'tandem-large-chat',
  'tandem-small-base',
  'tandem-small-chat',
  'tandem-large-oracle',
] as const;
export const CLASSIFIER = 'tandem-source-classifier';

export const modelDir = (name: string) => join(BUILTIN_MODELS_DIR, name);
