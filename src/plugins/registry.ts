import { eftPlugin } from './eft/index.js';
import { guardPlugin } from './guard/index.js';
import { jailbreakPlugin } from './jailbreak/index.js';
import { privacyPlugin } from './privacy/index.js';
import { rulesPlugin } from './rules/index.js';
import type { PluginDefinition } from './types.js';

/** Every plugin a config can name in `use`. */
export function builtinPlugins(): Map<string, PluginDefinition> {
  const defs: PluginDefinition[] = [
    rulesPlugin as PluginDefinition,
    eftPlugin as PluginDefinition,
    guardPlugin as PluginDefinition,
    jailbreakPlugin as PluginDefinition,
    privacyPlugin as PluginDefinition,
  ];
  return new Map(defs.map((d) => [d.id, d]));
}
