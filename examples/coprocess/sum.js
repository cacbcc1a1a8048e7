#!/usr/bin/env node
// A fanflow coprocess (topics/COPROCESS.md): sums the "value" of each chunk's items.
//
// fanflow run --source range:10000 --chunk-size 10 --coprocess 'node examples/coprocess/sum.js'
'use strict';
const readline = require('readline');

function processChunk(chunk) {
  const items = chunk.data.items;
  if (!items.every((i) => i !== null && typeof i === 'object' && typeof i.value === 'number'))
    return { error: 'an item has no numeric "value"' };
  return { result: items.reduce((sum, i) => sum + i.value, 0) };
}

// One line in, one line out: fanflow waits for the reply before it sends this
// copy the next chunk. Diagnostics go to stderr (fanflow logs them).
const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  process.stdout.write(JSON.stringify(processChunk(JSON.parse(line))) + '\n');
});
