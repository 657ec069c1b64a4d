'use strict'
// Type-checks every ```ts block of the package README and of
// docs/node-typescript.md with `tsc --strict`: each block becomes a module
// (imports of '@factstr/factstr-node' point at this package).
//
//   node test/typecheck-docs.js

const { execFileSync } = require('node:child_process')
const { mkdirSync, readFileSync, rmSync, writeFileSync } = require('node:fs')
const { join } = require('node:path')

const packageDir = join(__dirname, '..')
const sources = [join(packageDir, 'README.md'), join(packageDir, '..', 'docs', 'node-typescript.md')]
const out = join(__dirname, 'docs-generated')
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

const files = []
for (const source of sources) {
  const text = readFileSync(source, 'utf8')
  const blocks = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1])
  blocks.forEach((block, index) => {
    const name = `${source.split(/[\\/]/).slice(-1)[0].replace(/\W/g, '_')}_${index}.ts`
    const code = block.replaceAll("from '@factstr/factstr-node'", "from '../..'")
    writeFileSync(join(out, name), `${code}\nexport {}\n`)
    files.push(name)
  })
}
if (files.length === 0) throw new Error('no TypeScript blocks found')

writeFileSync(
  join(out, 'tsconfig.json'),
  JSON.stringify({
    compilerOptions: {
      strict: true,
      noEmit: true,
      target: 'ES2022',
      module: 'commonjs',
      moduleResolution: 'node',
      types: ['node'],
      exactOptionalPropertyTypes: true,
    },
    files,
  }),
)
const tsc = join(packageDir, 'node_modules', 'typescript', 'bin', 'tsc')
execFileSync(process.execPath, [tsc, '-p', join(out, 'tsconfig.json')], { stdio: 'inherit' })
console.log(`${files.length} TypeScript blocks of the docs type-check with tsc --strict`)
