'use strict'
const { FactstrMemoryStore } = require('..')
const { describeStore } = require('./behaviours.js')

describeStore('FactstrMemoryStore', () => new FactstrMemoryStore())
