// typescript-eslint's strict, type-aware rules over the product, tools, tests and benchmarks. Rules
// are switched off only where they contradict the house style, each with the reason.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'tools/test-addon/build/', '*.cjs', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Indexed reads are checked by noUncheckedIndexedAccess; the house style asserts with `!` where
      // an index is known to be in range (hot loops over typed arrays), rather than re-checking.
      '@typescript-eslint/no-non-null-assertion': 'off',
      // Numbers in template literals are the norm in messages (`${bytes} bytes`, errno values).
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // Static-only helper classes are not used; this rule flags the private-constructor factory
      // pattern (ServedMemoryFile.open) the code uses on purpose.
      '@typescript-eslint/no-extraneous-class': 'off',
      // Dropping fields by destructuring into unused names (`const { a: _a, ...rest } = o`) is the idiom.
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true, argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      // `void promise` marks a deliberately unawaited promise, as the code does for background work.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // node:test's test() returns a promise the runner tracks; awaiting it at top level is not the idiom.
      '@typescript-eslint/no-floating-promises': 'off',
    },
  },
);
