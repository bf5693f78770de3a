import assert from 'node:assert/strict';
import { test } from 'node:test';

import { sessionOptions } from '../js/ortoptions.js';

test('graphs with stored int8 weights decode them at load; the statically quantized graph keeps its pairs', () => {
  const decoded = sessionOptions('wasm');
  assert.deepEqual(decoded.executionProviders, ['wasm']);
  assert.equal(decoded.extra.session.disable_quant_qdq, '1');
  assert.equal(decoded.extra.session.intra_op.allow_spinning, '0');
  const integer = sessionOptions('wasm', { integerArithmetic: true });
  assert.equal(integer.extra.session.disable_quant_qdq, undefined);
  assert.equal(integer.extra.session.intra_op.allow_spinning, '0');
  assert.deepEqual(sessionOptions('webgpu').executionProviders, ['webgpu']);
});
