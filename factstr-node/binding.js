'use strict'
// Loads the native addon for this platform: a local build next to this file
// (development), or the platform package installed as an optional dependency.

const { existsSync } = require('node:fs')
const { join } = require('node:path')

const SUPPORTED = {
  'linux-x64-gnu': 'x86_64-unknown-linux-gnu',
  'linux-arm64-gnu': 'aarch64-unknown-linux-gnu',
  'darwin-x64': 'x86_64-apple-darwin',
  'darwin-arm64': 'aarch64-apple-darwin',
  'win32-x64-msvc': 'x86_64-pc-windows-msvc',
}

function isMusl() {
  if (process.platform !== 'linux') return false
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null
  const header = report && (typeof report === 'string' ? JSON.parse(report).header : report.header)
  return !(header && header.glibcVersionRuntime)
}

function platformName() {
  const { platform, arch } = process
  if (platform === 'linux') return `linux-${arch}-${isMusl() ? 'musl' : 'gnu'}`
  if (platform === 'win32') return `win32-${arch}-msvc`
  return `${platform}-${arch}`
}

function load() {
  const name = platformName()
  const local = join(__dirname, `factstr-node.${name}.node`)
  if (existsSync(local)) return require(local)
  if (!(name in SUPPORTED)) {
    throw new Error(
      `@factstr/factstr-node has no prebuilt binary for ${name}. ` +
        `Prebuilt platforms: ${Object.keys(SUPPORTED).join(', ')}. ` +
        `To build from source, run \`npx napi build --platform --release\` in the package folder (needs Rust).`,
    )
  }
  const packageName = `@factstr/factstr-node-${name}`
  try {
    return require(packageName)
  } catch (error) {
    if (error && error.code === 'MODULE_NOT_FOUND' && String(error.message).includes(packageName)) {
      throw new Error(
        `The native part of @factstr/factstr-node for ${name} is missing: the package ${packageName} ` +
          `is not installed. It is an optional dependency, so it is skipped by installs with ` +
          `--omit=optional/--no-optional or by a lockfile made on another platform. ` +
          `Install it with \`npm install ${packageName}\` or reinstall without omitting optional dependencies.`,
      )
    }
    throw error
  }
}

module.exports = load()
