/** Log lines as JSON on stderr, one object a line. */

/**
 * @param {'info' | 'warning' | 'error'} level
 * @param {string} message
 * @param {object} [fields]
 */
export function log(level, message, fields = {}) {
  process.stderr.write(
    JSON.stringify({ time: new Date().toISOString(), level, message, ...fields }) + '\n',
  );
}
