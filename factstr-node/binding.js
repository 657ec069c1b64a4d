'use strict'
// Finds the native addon of the running platform and makes sure it is ours
// and of this package's version. In an installed package the addon comes from
// the platform package that npm installs as an optional dependency
// (`@factstr/factstr-node-<platform>`); in a repository checkout, a local
// build next to this file (`npm run build`) is used first.
//
// The decision is `selectAddon`, a function of plain inputs, so tests can feed
// it a missing package or an addon of another version without breaking an
// install. `loadAddon()` applies it to this machine.

const { existsSync } = require('node:fs')
const { join } = require('node:path')
const manifest = require('./package.json')

const BUILD_FROM_SOURCE =
  'https://github.com/factstr/factstr/blob/main/docs/node-typescript.md#building-the-addon-from-source'

/** The platforms with a prebuilt addon: those with a platform package among the optional dependencies. */
function prebuiltPlatforms(packageJson = manifest) {
  const prefix = `${packageJson.name}-`
  return Object.keys(packageJson.optionalDependencies ?? {})
    .filter((dependency) => dependency.startsWith(prefix))
    .map((dependency) => dependency.slice(prefix.length))
}

/** napi-rs's platform name: `linux-x64-gnu`, `linux-arm64-musl`, `darwin-arm64`, `win32-x64-msvc`, ... */
function platformName({ platform, arch, musl }) {
  if (platform === 'linux') return `linux-${arch}-${musl ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function isMusl() {
  if (process.platform !== 'linux') return false
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
  const header = report && (typeof report === 'string' ? JSON.parse(report).header : report.header)
  return !(header && header.glibcVersionRuntime)
}

function loaderError(message, cause) {
  return cause === undefined ? new Error(message) : new Error(message, { cause })
}

function isMissingPackage(error, packageName) {
  return (
    error !== null &&
    typeof error === 'object' &&
    error.code === 'MODULE_NOT_FOUND' &&
    String(error.message).includes(`'${packageName}'`)
  )
}

/**
 * Refuses an addon that is not FACTSTR's (no `factstrAddonVersion` export,
 * which addons before 0.6.0 also lack) or whose version differs from this
 * package's. `origin` names where it came from; `fix` says what to do.
 */
function checkAddon(addon, { packageName, version, origin, fix }) {
  const found = addon !== null && typeof addon === 'object' && typeof addon.factstrAddonVersion === 'function'
  if (!found || typeof addon.NativeStore !== 'function') {
    throw loaderError(
      `${origin} is not the native part of ${packageName} ${version}: it has no factstrAddonVersion ` +
        `export, so it is from a release before 0.6.0 or not FACTSTR's. ${fix}`,
    )
  }
  const addonVersion = addon.factstrAddonVersion()
  if (addonVersion !== version) {
    throw loaderError(
      `${origin} is version ${addonVersion}, but ${packageName} is version ${version}; ` +
        `both must be the same release. ${fix}`,
    )
  }
  return addon
}

/**
 * Decides which native addon to use, or throws an error that says what to
 * install.
 *
 * - `packageName`, `version`: this package's name and version;
 * - `platform`: the running platform's name (see `platformName`);
 * - `prebuilt`: the platforms with a platform package;
 * - `loadLocal()`: the addon built next to this file, or `undefined` if there is none;
 * - `loadPackage(name)`: the exports of the platform package `name`; throws as `require` does.
 */
function selectAddon({ packageName, version, platform, prebuilt, loadLocal, loadPackage }) {
  const platformPackage = `${packageName}-${platform}`
  const install = `npm install ${platformPackage}@${version}`

  const local = loadLocal()
  if (local !== undefined) {
    return checkAddon(local, {
      packageName,
      version,
      origin: `The local build factstr-node.${platform}.node`,
      fix: `Rebuild it (\`npm run build\` in factstr-node/) or delete it to use the installed ${platformPackage}.`,
    })
  }

  if (!prebuilt.includes(platform)) {
    throw loaderError(
      `${packageName} ${version} has no prebuilt native part for ${platform}. ` +
        `Prebuilt platforms: ${prebuilt.join(', ')}. ` +
        `To build it from source (needs Rust and a clone of the repository), see ${BUILD_FROM_SOURCE}`,
    )
  }

  let addon
  try {
    addon = loadPackage(platformPackage)
  } catch (error) {
    if (isMissingPackage(error, platformPackage)) {
      throw loaderError(
        `The native part of ${packageName} for ${platform} is missing: ${platformPackage} is not ` +
          `installed. It is an optional dependency, so installs with --omit=optional or --no-optional ` +
          `skip it, and so does a lockfile made on another platform. Install it with \`${install}\`, ` +
          `or reinstall without omitting optional dependencies.`,
        error,
      )
    }
    const reason = error instanceof Error ? error.message : String(error)
    throw loaderError(
      `${platformPackage} is installed but its native part does not load on this system: ${reason}. ` +
        `Reinstall it with \`${install}\`; if the error names a missing library version, this ` +
        `system is older than the prebuilt binary supports.`,
      error,
    )
  }
  return checkAddon(addon, {
    packageName,
    version,
    origin: `The installed ${platformPackage}`,
    fix: `Install the matching one with \`${install}\`.`,
  })
}

let loaded

/** Loads (once) and returns the native addon of this machine. */
function loadAddon() {
  if (loaded === undefined) {
    const platform = platformName({ platform: process.platform, arch: process.arch, musl: isMusl() })
    const local = join(__dirname, `factstr-node.${platform}.node`)
    loaded = selectAddon({
      packageName: manifest.name,
      version: manifest.version,
      platform,
      prebuilt: prebuiltPlatforms(),
      loadLocal: () => (existsSync(local) ? require(local) : undefined),
      loadPackage: (name) => require(name),
    })
  }
  return loaded
}

module.exports = { loadAddon, platformName, prebuiltPlatforms, selectAddon }
