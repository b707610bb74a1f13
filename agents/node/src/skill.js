/**
 * The skill this worker offers: `detect_language`, as the scheduler's catalogue
 * defines it (clients/python/src/agentmesh/server/skills.py):
 *
 *   input   {"text": non-empty string, ...}  (extra properties allowed)
 *   output  {"language": "^[a-z]{2}$", "confidence": number in [0, 1]}
 *           (closed: no other property, both required)
 *   max_input_bytes  262144 (the input as JSON in UTF-8 bytes)
 *
 * The method is tiny on purpose: the share of a text's words that are common
 * function words ("the", "und", "les", ...) of each language. It needs no model and
 * no network, like the Python builtin backend.
 */

import { inputBytes } from './struct.js';
import { WorkerError } from './status.js';
import grpc from '@grpc/grpc-js';

export const CAPABILITY = 'detect_language';
export const MAX_INPUT_BYTES = 262_144;

/** Common words of each language, ISO 639-1 code first. */
const STOPWORDS = {
  en: 'the and is are was were to of in it that this my i you with for not have has be on at from your please order',
  fr: 'le la les et est sont un une des du de je vous il elle pas pour avec sur dans mon ma mes ne que qui bonjour merci commande',
  de: 'der die das und ist sind ein eine nicht ich sie es mit für auf den dem zu von mein meine bitte danke bestellung',
  es: 'el la los las y es son un una de del que en no por para con mi mis yo usted hola gracias pedido',
  it: 'il lo la gli le e è sono un una di del che non per con mio mia io ciao grazie ordine',
  pt: 'o a os as e é são um uma de do da que não para com meu minha eu você olá obrigado pedido',
  nl: 'de het een en is zijn niet ik je jij met voor op van mijn bedankt alstublieft bestelling',
};

/** @type {Map<string, Set<string>>} */
const WORDS = new Map(Object.entries(STOPWORDS).map(([code, words]) => [code, new Set(words.split(' '))]));

/**
 * The language of a text and the confidence in it.
 * @param {string} text
 * @returns {{language: string, confidence: number}}
 */
export function detectLanguage(text) {
  const tokens = text.toLowerCase().match(/\p{L}+/gu) ?? [];
  let best = 'en';
  let bestHits = 0;
  let total = 0;
  for (const [code, words] of WORDS) {
    const hits = tokens.filter((t) => words.has(t)).length;
    total += hits;
    if (hits > bestHits) {
      best = code;
      bestHits = hits;
    }
  }
  if (bestHits === 0) return { language: 'en', confidence: 0.1 }; // nothing to go on
  // The share of the function words seen that are this language's, damped for short texts.
  const share = bestHits / total;
  const support = Math.min(bestHits / 5, 1);
  return { language: best, confidence: round(share * (0.5 + 0.5 * support)) };
}

/** @param {number} x */
function round(x) {
  return Math.round(Math.min(Math.max(x, 0), 1) * 1000) / 1000;
}

/**
 * Refuse an input over the skill's budget or against its schema: INVALID_ARGUMENT
 * with field violations named as the Python worker names them ("input", "input.text").
 * @param {import('./struct.js').JsonObject} input
 */
export function checkInput(input) {
  const size = inputBytes(input);
  if (size > MAX_INPUT_BYTES) {
    throw new WorkerError(
      grpc.status.INVALID_ARGUMENT,
      `the input for ${CAPABILITY} is ${size} bytes, over its limit of ${MAX_INPUT_BYTES} bytes`,
      {
        violations: [{ field: 'input', description: `at most ${MAX_INPUT_BYTES} bytes as JSON (UTF-8)` }],
        reason: 'INPUT_TOO_LARGE',
        metadata: { capability: CAPABILITY, max_input_bytes: String(MAX_INPUT_BYTES) },
      },
    );
  }
  /** @type {import('./status.js').FieldViolation[]} */
  const violations = [];
  const text = input.text;
  if (!('text' in input)) {
    violations.push({ field: 'input', description: "'text' is a required property" });
  } else if (typeof text !== 'string') {
    violations.push({ field: 'input.text', description: `${JSON.stringify(text)} is not of type 'string'` });
  } else if (text.length === 0) {
    violations.push({ field: 'input.text', description: "'' should be non-empty" });
  }
  if (violations.length) {
    throw new WorkerError(
      grpc.status.INVALID_ARGUMENT,
      `input for ${CAPABILITY} is invalid: ` + violations.map((v) => `${v.field}: ${v.description}`).join('; '),
      { violations, reason: 'INVALID_INPUT' },
    );
  }
}

/**
 * Where an output breaks the skill's output schema; empty when it is valid.
 * @param {{[key: string]: unknown}} output
 * @returns {string[]}
 */
export function outputViolations(output) {
  const problems = [];
  for (const key of Object.keys(output)) {
    if (key !== 'language' && key !== 'confidence') problems.push(`output.${key}: not allowed`);
  }
  if (typeof output.language !== 'string' || !/^[a-z]{2}$/.test(output.language)) {
    problems.push('output.language: two lower-case letters (ISO 639-1) required');
  }
  const c = output.confidence;
  if (typeof c !== 'number' || !(c >= 0 && c <= 1)) {
    problems.push('output.confidence: a number from 0 to 1 required');
  }
  return problems;
}
