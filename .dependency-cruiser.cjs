// Dependency direction, checked by `npm run lint` (and so by .ci/run). Layers, lowest first:
//
//   errors.ts, log.ts, atomic-write.ts  (shared by all)
//   kernel -> memory -> firecracker (protocol) -> store -> trace -> snapshot -> serve -> server
//     -> report -> daemon -> client -> cli
//
// A module may import its own layer and the layers below it, never one above. The product (src/)
// never imports tools/, test/ or bench/; tools/ may use the product. No cycles anywhere.
const LAYERS = ['kernel', 'memory', 'firecracker', 'store', 'trace', 'snapshot', 'serve', 'server', 'report', 'daemon', 'client', 'cli'];

const upward = LAYERS.slice(0, -1).map((layer, i) => ({
  name: `${layer}-imports-no-upper-layer`,
  comment: `src/${layer}/ may import only ${LAYERS.slice(0, i + 1).join(', ')} and the shared modules`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: { path: `^src/(${LAYERS.slice(i + 1).join('|')})/` },
}));

module.exports = {
  forbidden: [
    ...upward,
    {
      name: 'shared-modules-import-no-layer',
      comment: 'src/errors.ts, src/log.ts and src/atomic-write.ts are below every layer',
      severity: 'error',
      from: { path: '^src/(errors|log|atomic-write)[.]ts$' },
      to: { path: '^src/[^/]+/' },
    },
    {
      name: 'product-imports-no-tooling',
      comment: 'the published package ships src/ only: it must not need tools/, test/ or bench/',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(tools|test|bench)/' },
    },
    {
      name: 'tools-import-no-tests',
      severity: 'error',
      from: { path: '^tools/' },
      to: { path: '^(test|bench)/' },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|build|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js'],
    },
  },
};
