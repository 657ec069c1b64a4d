'use strict'
// The loader's decisions (binding.js), fed with fake platforms, packages and
// addons: no broken install needed. The last case loads the real addon.

const { describe, it } = require('node:test')
const assert = require('node:assert/strict')

const { loadAddon, platformName, prebuiltPlatforms, selectAddon } = require('../binding.js')
const manifest = require('../package.json')

class FakeNativeStore {}

function addon(version) {
  return { NativeStore: FakeNativeStore, factstrAddonVersion: () => version }
}

function notFound(name) {
  const error = new Error(`Cannot find module '${name}'\nRequire stack:\n- /app/node_modules/@factstr/factstr-node/binding.js`)
  error.code = 'MODULE_NOT_FOUND'
  return error
}

/** Runs `selectAddon` for an installed 0.6.0 package on linux-x64-gnu, with `overrides`. */
function select(overrides) {
  const requested = []
  const chosen = selectAddon({
    packageName: '@factstr/factstr-node',
    version: '0.6.0',
    platform: 'linux-x64-gnu',
    prebuilt: ['linux-x64-gnu', 'darwin-arm64'],
    loadLocal: () => undefined,
    loadPackage: (name) => {
      requested.push(name)
      return addon('0.6.0')
    },
    ...overrides,
  })
  return { chosen, requested }
}

function refusal(overrides, ...expected) {
  assert.throws(
    () => select(overrides),
    (error) => {
      for (const part of expected) {
        assert.ok(error.message.includes(part), `"${error.message}"\nshould contain "${part}"`)
      }
      assert.doesNotMatch(error.message, /package folder/)
      return true
    },
  )
}

describe('loader', () => {
  it('loads the platform package of the running platform when its version matches', () => {
    const { chosen, requested } = select({})
    assert.equal(chosen.NativeStore, FakeNativeStore)
    assert.deepEqual(requested, ['@factstr/factstr-node-linux-x64-gnu'])
  })

  it('names the exact platform package and version when it is not installed', () => {
    const missing = notFound('@factstr/factstr-node-linux-x64-gnu')
    refusal(
      {
        loadPackage: () => {
          throw missing
        },
      },
      'for linux-x64-gnu is missing',
      '`npm install @factstr/factstr-node-linux-x64-gnu@0.6.0`',
      '--omit=optional',
    )
    assert.throws(
      () =>
        select({
          loadPackage: () => {
            throw missing
          },
        }),
      (error) => error.cause === missing,
    )
  })

  it('refuses a platform package of another version and says which one to install', () => {
    refusal(
      { loadPackage: () => addon('0.6.1') },
      'The installed @factstr/factstr-node-linux-x64-gnu is version 0.6.1, but @factstr/factstr-node is version 0.6.0',
      '`npm install @factstr/factstr-node-linux-x64-gnu@0.6.0`',
    )
  })

  it('refuses a native part that is not ours or older than the version check', () => {
    for (const foreign of [{ NativeStore: FakeNativeStore }, { factstrAddonVersion: () => '0.6.0' }, {}, null]) {
      refusal(
        { loadPackage: () => foreign },
        'is not the native part of @factstr/factstr-node 0.6.0',
        '`npm install @factstr/factstr-node-linux-x64-gnu@0.6.0`',
      )
    }
  })

  it('reports a platform package that is installed but does not load, with the reason', () => {
    const dlopen = new Error("/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found")
    refusal(
      {
        loadPackage: () => {
          throw dlopen
        },
      },
      'installed but its native part does not load on this system',
      "GLIBC_2.34' not found",
      '`npm install @factstr/factstr-node-linux-x64-gnu@0.6.0`',
    )
    // A missing module other than the platform package itself is not "not installed".
    refusal(
      {
        loadPackage: () => {
          throw notFound('/app/node_modules/@factstr/factstr-node-linux-x64-gnu/factstr-node.linux-x64-gnu.node')
        },
      },
      'installed but its native part does not load',
    )
  })

  it('points a platform without a prebuilt binary to the repository, not to the package folder', () => {
    const requested = []
    refusal(
      {
        platform: 'freebsd-x64',
        loadPackage: (name) => {
          requested.push(name)
          return addon('0.6.0')
        },
      },
      'has no prebuilt native part for freebsd-x64',
      'Prebuilt platforms: linux-x64-gnu, darwin-arm64',
      'https://github.com/factstr/factstr/blob/main/docs/node-typescript.md#building-the-addon-from-source',
    )
    assert.deepEqual(requested, [])
  })

  it('prefers a local build of the same version, and refuses a stale one', () => {
    const local = addon('0.6.0')
    const { chosen, requested } = select({ loadLocal: () => local })
    assert.equal(chosen, local)
    assert.deepEqual(requested, [])
    refusal(
      { loadLocal: () => addon('0.5.9') },
      'The local build factstr-node.linux-x64-gnu.node is version 0.5.9',
      'delete it to use the installed @factstr/factstr-node-linux-x64-gnu',
    )
  })

  it('names platforms the way the platform packages do', () => {
    assert.equal(platformName({ platform: 'linux', arch: 'x64', musl: false }), 'linux-x64-gnu')
    assert.equal(platformName({ platform: 'linux', arch: 'arm64', musl: true }), 'linux-arm64-musl')
    assert.equal(platformName({ platform: 'darwin', arch: 'arm64', musl: false }), 'darwin-arm64')
    assert.equal(platformName({ platform: 'win32', arch: 'x64', musl: false }), 'win32-x64-msvc')
  })

  it('knows the prebuilt platforms from the optional dependencies', () => {
    const platforms = prebuiltPlatforms()
    assert.equal(platforms.length, Object.keys(manifest.optionalDependencies).length)
    for (const platform of platforms) {
      assert.equal(manifest.optionalDependencies[`${manifest.name}-${platform}`], manifest.version)
    }
    assert.deepEqual(
      prebuiltPlatforms({ name: '@factstr/factstr-node', optionalDependencies: { '@factstr/factstr-node-linux-x64-musl': '1.0.0', other: '1' } }),
      ['linux-x64-musl'],
    )
  })

  it('loads the real addon, which reports this package version', () => {
    assert.equal(loadAddon().factstrAddonVersion(), manifest.version)
    assert.equal(loadAddon(), loadAddon())
  })
})
