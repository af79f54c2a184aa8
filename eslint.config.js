import neostandard from 'neostandard'

export default neostandard({
  ts: true,
  ignores: ['.node/**', 'dist/**', 'dist-bench/**', 'node_modules/**', 'coverage/**', '.tap/**', 'data/**', 'test-artifacts/**', 'client/openapi.d.ts']
})
