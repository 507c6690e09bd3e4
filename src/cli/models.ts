import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { builtinPlugins } from '../plugins/registry.js';
import { loadConfig } from '../proxy/loadConfig.js';
import { readModelFolder } from '../slm/folder.js';
import { ModelRegistry } from '../slm/registry.js';
import { openSession } from '../slm/session.js';
import { addPullCommand } from './modelsPull.js';

function registryFor(configFile: string | undefined): ModelRegistry {
  if (!configFile) return new ModelRegistry();
  const loaded = loadConfig(configFile, {}, builtinPlugins());
  return new ModelRegistry(loaded.config.models, loaded.baseDir);
}

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

/** `tandem models list | info NAME` (pull is added by modelsPull.ts). */
export function addModelsCommands(program: Command): Command {
  const models = program.command('models').description('local models: the shipped family, configured ones, downloads');
  models
    .command('list')
    .description('list the local models Tandem knows')
    .option('--config <file>', 'also list the models of this config')
    .action((opts: { config?: string }) => {
      const reg = registryFor(opts.config);
      for (const name of reg.names()) {
        const spec = reg.spec(name);
        try {
          const f = readModelFolder(spec.path, spec.onnxFile);
          const arch = f.config.architectures?.[0] ?? f.config.model_type ?? '?';
          console.log(
            `${name.padEnd(28)} ${arch.padEnd(32)} ${mb(statSync(f.onnxPath).size).padStart(9)}  ${spec.path}`,
          );
        } catch (err) {
          console.log(`${name.padEnd(28)} unusable: ${(err as Error).message}`);
        }
      }
    });
  models
    .command('info <name>')
    .description('show a model: config, files, graph inputs and outputs')
    .option('--config <file>', 'resolve names from this config too')
    .action(async (name: string, opts: { config?: string }) => {
      const reg = registryFor(opts.config);
      const spec = reg.spec(name);
      const f = readModelFolder(spec.path, spec.onnxFile);
      const session = await openSession(spec.path, f.onnxPath, { threads: 1 });
      const c = f.config;
      console.log(
        JSON.stringify(
          {
            name,
            path: spec.path,
            kind: reg.kind(name),
            architecture: c.architectures?.[0],
            model_type: c.model_type,
            vocab_size: c.vocab_size,
            layers: c.num_hidden_layers,
            hidden_size: c.hidden_size,
            context: c.max_position_embeddings,
            labels: c.id2label,
            onnx: { file: f.onnxPath.slice(spec.path.length + 1), size: statSync(f.onnxPath).size },
            chat_template: typeof f.tokenizerConfig.chat_template === 'string',
            inputs: session.inputNames,
            outputs: session.outputNames,
          },
          null,
          2,
        ),
      );
      await session.release();
    });
  addPullCommand(models);
  return models;
}
