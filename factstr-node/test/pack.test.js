'use strict'
// `npm pack` produces an installable package: pack the main package and this
// platform's binary package, install both into a fresh project, require the
// package there, append and query.

const { it } = require('node:test')
const assert = require('node:assert/strict')
const { execFileSync } = require('node:child_process')
const { cpSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } = require('node:fs')
const { tmpdir } = require('node:os')
const { join } = require('node:path')

const packageDir = join(__dirname, '..')
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'

function hostPlatform() {
  const built = readdirSync(packageDir).find((name) => /^factstr-node\..+\.node$/.test(name))
  assert.ok(built, 'build the addon first (npx napi build --platform)')
  return built.slice('factstr-node.'.length, -'.node'.length)
}

function pack(directory, destination) {
  const output = execFileSync(npm, ['pack', '--json', '--pack-destination', destination], {
    cwd: directory,
    encoding: 'utf8',
  })
  return join(destination, JSON.parse(output)[0].filename)
}

it('packs into tarballs that install and work in a fresh project', { timeout: 180_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'factstr-pack-'))
  try {
    const platform = hostPlatform()
    const platformDir = join(work, `platform-${platform}`)
    cpSync(join(packageDir, 'npm', platform), platformDir, { recursive: true })
    cpSync(join(packageDir, `factstr-node.${platform}.node`), join(platformDir, `factstr-node.${platform}.node`))

    const mainTarball = pack(packageDir, work)
    const platformTarball = pack(platformDir, work)

    const listing = execFileSync('tar', ['-tzf', mainTarball], { encoding: 'utf8' })
    for (const file of ['package/index.js', 'package/index.d.ts', 'package/binding.js', 'package/README.md']) {
      assert.ok(listing.includes(file), `${file} is missing from the package:\n${listing}`)
    }
    assert.ok(!listing.includes('.node'), 'the main package must not carry a native binary')

    const project = join(work, 'project')
    execFileSync('mkdir', ['-p', project])
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }))
    execFileSync(npm, ['install', '--no-audit', '--no-fund', mainTarball, platformTarball], {
      cwd: project,
      encoding: 'utf8',
    })
    assert.ok(existsSync(join(project, 'node_modules', '@factstr', 'factstr-node', 'index.d.ts')))

    const output = execFileSync(
      process.execPath,
      [
        '-e',
        `const { FactstrMemoryStore } = require('@factstr/factstr-node')
         const store = new FactstrMemoryStore()
         store.append([{ event_type: 'installed', payload: { ok: true } }])
         const result = store.query({ filters: [{ event_types: ['installed'] }] })
         console.log(result.event_records.length, String(result.current_context_version))`,
      ],
      { cwd: project, encoding: 'utf8' },
    )
    assert.equal(output.trim(), '1 1')
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
})
