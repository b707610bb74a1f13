import { test } from 'node:test';
import assert from 'node:assert/strict';
import grpc from '@grpc/grpc-js';
import { checkInput, detectLanguage, outputViolations, MAX_INPUT_BYTES } from '../src/skill.js';
import { WorkerError } from '../src/status.js';

test('detects the languages it knows by their common words', () => {
  const cases = {
    en: 'Where is my order? It was supposed to arrive last week.',
    fr: "Bonjour, je n'ai pas reçu ma commande",
    de: 'Hallo, ich habe meine Bestellung nicht bekommen',
    es: 'Hola, no he recibido mi pedido todavía',
    it: 'Ciao, non ho ricevuto il mio ordine',
    nl: 'Ik heb mijn bestelling niet ontvangen',
  };
  for (const [language, text] of Object.entries(cases)) {
    assert.equal(detectLanguage(text).language, language, text);
  }
});

test('every answer satisfies the output schema, even for text without words', () => {
  for (const text of ['x', '12345', '!!!', 'the the the the the the', 'ñ']) {
    assert.deepEqual(outputViolations(detectLanguage(text)), []);
  }
});

test('the output check refuses what the schema refuses', () => {
  assert.equal(outputViolations({ language: 'EN', confidence: 0.5 }).length, 1);
  assert.equal(outputViolations({ language: 'en', confidence: 1.5 }).length, 1);
  assert.equal(outputViolations({ language: 'en', confidence: 0.5, extra: 1 }).length, 1);
  assert.equal(outputViolations({}).length, 2);
});

/** @param {() => void} fn */
function refusal(fn) {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof WorkerError);
    return error;
  }
  assert.fail('not refused');
}

test('bad input is INVALID_ARGUMENT with field violations', () => {
  let error = refusal(() => checkInput({ text: '' }));
  assert.equal(error.code, grpc.status.INVALID_ARGUMENT);
  assert.deepEqual(error.violations.map((v) => v.field), ['input.text']);
  error = refusal(() => checkInput({ text: null }));
  assert.deepEqual(error.violations.map((v) => v.field), ['input.text']);
  error = refusal(() => checkInput({}));
  assert.deepEqual(error.violations.map((v) => v.field), ['input']);
  error = refusal(() => checkInput({ text: 'a'.repeat(MAX_INPUT_BYTES) }));
  assert.equal(error.reason, 'INPUT_TOO_LARGE');
  checkInput({ text: 'hello', extra: { allowed: true } });
});
